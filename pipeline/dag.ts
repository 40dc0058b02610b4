/** The stage graph as Mermaid (default) or DOT text: one node per stage, edges from inputs. */
import type { StageDef } from './types.ts';
import { matrixAxes, topoSortStages } from './graph.ts';

function nodeText(s: StageDef, counts?: Map<string, number>): string {
  // A conditional variable shows its condition: `arch × (beta if arch=gsae) × k`.
  const vars = matrixAxes(s).map((a) =>
    a.when ? `(${a.variable} if ${Object.entries(a.when).map(([v, w]) => `${v}=${Array.isArray(w) ? w.map(String).join('|') : String(w)}`).join(',')})` : a.variable,
  );
  const n = counts?.get(s.name);
  const matrix = vars.length > 0 ? ` [${vars.join(' × ')}]` : '';
  const count = n !== undefined && vars.length > 0 ? ` (${n} instances)` : '';
  return `${s.name}${matrix}${count}`;
}

const id = (name: string): string => name.replace(/[^A-Za-z0-9_]/g, '_');

export function toMermaid(stages: StageDef[], counts?: Map<string, number>): string {
  const lines = ['flowchart LR'];
  for (const s of topoSortStages(stages)) lines.push(`  ${id(s.name)}["${nodeText(s, counts).replace(/"/g, '#quot;')}"]`);
  for (const s of topoSortStages(stages)) {
    for (const [name, spec] of Object.entries(s.inputs ?? {})) {
      const label = spec.all ? `${name} (all)` : name;
      lines.push(`  ${id(spec.stage)} -->|"${label}"| ${id(s.name)}`);
    }
  }
  return lines.join('\n');
}

export function toDot(stages: StageDef[], counts?: Map<string, number>): string {
  const q = (s: string): string => JSON.stringify(s);
  const lines = ['digraph pipeline {', '  rankdir=LR;', '  node [shape=box];'];
  for (const s of topoSortStages(stages)) lines.push(`  ${q(s.name)} [label=${q(nodeText(s, counts))}];`);
  for (const s of topoSortStages(stages)) {
    for (const [name, spec] of Object.entries(s.inputs ?? {})) {
      lines.push(`  ${q(spec.stage)} -> ${q(s.name)} [label=${q(spec.all ? `${name} (all)` : name)}${spec.all ? ', style=bold' : ''}];`);
    }
  }
  lines.push('}');
  return lines.join('\n');
}
