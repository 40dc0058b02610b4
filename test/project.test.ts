/** The project as a whole: types check, the generated params type is current, the README documents every key and stage. */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stages } from '../stages/index.ts';
import { paramsTable, readmeWithTable } from '../scripts/readme-params.ts';

const ROOT = path.resolve(__dirname, '..');

function leafKeys(schema: any, prefix = ''): string[] {
  return Object.entries(schema.properties ?? {}).flatMap(([k, p]: [string, any]) =>
    p.type === 'object' ? leafKeys(p, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

describe('project', () => {
  it('type-checks (tsc --noEmit, strict)', () => {
    const r = spawnSync('npx', ['tsc', '--noEmit', '-p', ROOT], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 300_000);

  it('has stages/params.gen.ts generated from the current params.schema.json', () => {
    const r = spawnSync('npx', ['tsx', 'pipeline/cli.ts', 'types', '--check'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('documents every params key and every stage in the README', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'params.schema.json'), 'utf8'));
    const missingKeys = leafKeys(schema).filter((k) => !readme.includes(`\`${k}\``));
    expect(missingKeys).toEqual([]);
    const missingStages = stages.map((s) => s.name).filter((n) => !readme.includes(`| \`${n}\` |`));
    expect(missingStages).toEqual([]);
  });

  it('has the README params table generated from the current schema and params.yaml', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    expect(readmeWithTable(readme, paramsTable(ROOT)), 'run: npx tsx scripts/readme-params.ts').toBe(readme);
  });
});
