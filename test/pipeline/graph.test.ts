/** Instances, wildcard inputs, code closures and fingerprint reasons (in-process, fast). */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCodeGraph, localClosure, packageVersions } from '../../pipeline/closure.ts';
import { explainChange, type FingerprintComponents, fingerprintOf } from '../../pipeline/fingerprint.ts';
import { buildInstances, matchTargets, withDependencies } from '../../pipeline/graph.ts';
import type { StageDef } from '../../pipeline/types.ts';

const stage = (name: string, extra: Partial<StageDef> = {}): StageDef => ({ name, params: [], outputs: [], run: async () => {}, ...extra });

describe('instances', () => {
  const params = { sae: { arch: ['topk', 'gsae'], k: [8, 32] }, seeds: [0] };
  const stages = [
    stage('report', { inputs: { evals: { stage: 'downstream', all: true } } }),
    stage('collect'),
    stage('sae', { matrix: { arch: 'sae.arch', k: 'sae.k', seed: 'seeds' }, inputs: { acts: { stage: 'collect' } } }),
    stage('downstream', { matrix: { arch: 'sae.arch', k: 'sae.k', seed: 'seeds' }, inputs: { sae: { stage: 'sae' } } }),
    stage('per_arch', { matrix: { arch: 'sae.arch' }, inputs: { runs: { stage: 'sae', all: true } } }),
  ];

  it('expands matrices in list order, topologically sorted, with wildcard inputs', () => {
    const inst = buildInstances(stages, params);
    expect(inst.map((i) => i.id)).toEqual([
      'collect',
      'sae[arch=topk,k=8,seed=0]',
      'sae[arch=topk,k=32,seed=0]',
      'sae[arch=gsae,k=8,seed=0]',
      'sae[arch=gsae,k=32,seed=0]',
      'downstream[arch=topk,k=8,seed=0]',
      'downstream[arch=topk,k=32,seed=0]',
      'downstream[arch=gsae,k=8,seed=0]',
      'downstream[arch=gsae,k=32,seed=0]',
      'report',
      'per_arch[arch=topk]',
      'per_arch[arch=gsae]',
    ]);
    const byId = new Map(inst.map((i) => [i.id, i]));
    expect(byId.get('downstream[arch=gsae,k=32,seed=0]')!.inputs[0].from).toEqual(['sae[arch=gsae,k=32,seed=0]']);
    expect(byId.get('sae[arch=topk,k=8,seed=0]')!.inputs[0].from).toEqual(['collect']);
    expect(byId.get('report')!.inputs[0].from).toHaveLength(4);
    // `all` within shared variables: per_arch[arch=gsae] reads the gsae instances only.
    expect(byId.get('per_arch[arch=gsae]')!.inputs[0].from).toEqual(['sae[arch=gsae,k=8,seed=0]', 'sae[arch=gsae,k=32,seed=0]']);
  });

  it('targets select instances plus their dependencies', () => {
    const inst = buildInstances(stages, params);
    const picked = withDependencies(inst, matchTargets(inst, ['downstream[arch=gsae,k=8]']));
    expect(picked.map((i) => i.id)).toEqual(['collect', 'sae[arch=gsae,k=8,seed=0]', 'downstream[arch=gsae,k=8,seed=0]']);
    expect(() => matchTargets(inst, ['sae[lr=1]'])).toThrow(/stage "sae" has no matrix variable "lr"/);
    expect(() => matchTargets(inst, ['sae[k=99]'])).toThrow(/matches no instance/);
  });

  it('rejects ambiguous plain inputs, non-list matrix keys and cycles', () => {
    expect(() => buildInstances([stage('a', { matrix: { k: 'sae.k' } }), stage('b', { inputs: { x: { stage: 'a' } } })], params)).toThrow(
      /b: input "x" must match exactly one instance of "a" .* but 2 match; declare it with all: true/,
    );
    expect(() => buildInstances([stage('a', { matrix: { k: 'sae' } })], params)).toThrow(/needs params\.sae to be a list/);
    expect(() => buildInstances([stage('a', { inputs: { x: { stage: 'b' } } }), stage('b', { inputs: { y: { stage: 'a' } } })], params)).toThrow(/cycle/);
  });
});

describe('code closure', () => {
  it('follows the real import graph: each stage gets its own files and the locked versions of its packages', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pipeline-closure-'));
    try {
      await fs.mkdir(path.join(root, 'stages/lib'), { recursive: true });
      await fs.writeFile(path.join(root, 'stages/lib/shared.ts'), 'export const shared = 1;\n');
      await fs.writeFile(path.join(root, 'stages/lib/only-a.ts'), "import YAML from 'yaml';\nimport { shared } from './shared.ts';\nexport const a = () => YAML.stringify(shared);\n");
      await fs.writeFile(path.join(root, 'stages/lib/types-only.ts'), 'export interface T { x: number }\n');
      await fs.writeFile(path.join(root, 'stages/a.ts'), "import { a } from './lib/only-a.ts';\nimport type { T } from './lib/types-only.ts';\nimport * as fs from 'node:fs';\nexport const stageA = { a, fs } as unknown as T;\n");
      await fs.writeFile(
        path.join(root, 'stages/b.ts'),
        "import { shared } from './lib/shared.ts';\nexport const worker = new URL('./lib/worker.ts', import.meta.url);\nexport const stageB = async () => (await import('./lib/lazy.ts')).lazy + shared;\n",
      );
      await fs.writeFile(path.join(root, 'stages/lib/worker.ts'), "import { deep } from './deep.ts';\nconsole.log(deep);\n");
      await fs.writeFile(path.join(root, 'stages/lib/deep.ts'), 'export const deep = 3;\n');
      await fs.writeFile(path.join(root, 'stages/lib/lazy.ts'), 'export const lazy = 2;\n');
      await fs.writeFile(path.join(root, 'stages/index.ts'), "export * from './a.ts';\nexport * from './b.ts';\n");
      await fs.writeFile(
        path.join(root, 'package-lock.json'),
        JSON.stringify({ packages: { '': {}, 'node_modules/yaml': { version: '2.9.1', dependencies: { dep: '^1' } }, 'node_modules/dep': { version: '1.2.3' } } }),
      );
      const cacheDir = path.join(root, '.cache');
      const graph = await loadCodeGraph(root, path.join(root, 'stages/index.ts'), cacheDir);
      expect(localClosure(graph, 'stages/a.ts')).toEqual(['stages/a.ts', 'stages/lib/only-a.ts', 'stages/lib/shared.ts']);
      // Dynamic imports and worker modules (new URL(..., import.meta.url)) count, transitively.
      expect(localClosure(graph, 'stages/b.ts')).toEqual(['stages/b.ts', 'stages/lib/deep.ts', 'stages/lib/lazy.ts', 'stages/lib/shared.ts', 'stages/lib/worker.ts']);
      expect(packageVersions(graph, localClosure(graph, 'stages/a.ts'))).toEqual({ dep: '1.2.3', yaml: '2.9.1' });
      expect(packageVersions(graph, localClosure(graph, 'stages/b.ts'))).toEqual({});

      // Unchanged files: the cached graph is reused (same hashes); an edit is seen.
      const again = await loadCodeGraph(root, path.join(root, 'stages/index.ts'), cacheDir);
      expect(again.files['stages/lib/shared.ts'].sha256).toBe(graph.files['stages/lib/shared.ts'].sha256);
      await fs.writeFile(path.join(root, 'stages/lib/only-a.ts'), "import { shared } from './shared.ts';\nexport const a = () => shared;\n");
      const edited = await loadCodeGraph(root, path.join(root, 'stages/index.ts'), cacheDir);
      expect(edited.files['stages/lib/only-a.ts'].sha256).not.toBe(graph.files['stages/lib/only-a.ts'].sha256);
      expect(packageVersions(edited, localClosure(edited, 'stages/a.ts'))).toEqual({});

      // A non-module file referenced by URL (a stylesheet, a text read at run time) is an asset in
      // the closure of the module that references it: hashed, never built; an edit is seen.
      await fs.writeFile(path.join(root, 'stages/lib/page.css'), 'body { margin: 0; }\n');
      await fs.writeFile(path.join(root, 'stages/lib/METHOD.md'), '# Method\n');
      await fs.writeFile(path.join(root, 'stages/a.ts'), "import { a } from './lib/only-a.ts';\nexport const css = new URL('./lib/page.css', import.meta.url);\nexport const md = new URL('./lib/METHOD.md', import.meta.url);\nexport const stageA = a;\n");
      const withAssets = await loadCodeGraph(root, path.join(root, 'stages/index.ts'), cacheDir);
      expect(localClosure(withAssets, 'stages/a.ts')).toEqual(['stages/a.ts', 'stages/lib/METHOD.md', 'stages/lib/only-a.ts', 'stages/lib/page.css', 'stages/lib/shared.ts']);
      await fs.writeFile(path.join(root, 'stages/lib/page.css'), 'body { margin: 1px; }\n');
      const cssEdited = await loadCodeGraph(root, path.join(root, 'stages/index.ts'), cacheDir);
      expect(cssEdited.files['stages/lib/page.css'].sha256).not.toBe(withAssets.files['stages/lib/page.css'].sha256);
      expect(cssEdited.files['stages/lib/METHOD.md'].sha256).toBe(withAssets.files['stages/lib/METHOD.md'].sha256);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('fingerprint reasons', () => {
  const base: FingerprintComponents = {
    engine: 1,
    stage: 'sae',
    code: { 'stages/sae.ts': 'a', 'lib/sae/train.ts': 'b' },
    packages: { '@tensorflow/tfjs': '4.22.0' },
    params: { sae: { lr: 0.001, d: 64 } },
    instance: { arch: 'gsae', k: 32, seed: 0 },
    inputs: { acts: { label: 'collect', content: 'c1' }, all: [{ label: 'x[k=1]', content: 'x1' }] },
    env: { backend: 'cpu' },
    outputs: ['sae.safetensors'],
  };
  it('names the file, the param key with old → new value, the input and the env field', () => {
    const next: FingerprintComponents = structuredClone(base);
    next.code['lib/sae/train.ts'] = 'b2';
    next.params = { sae: { lr: 0.002, d: 64 } };
    next.inputs.acts = { label: 'collect', content: 'c2' };
    next.inputs.all = [{ label: 'x[k=1]', content: 'x1' }, { label: 'x[k=2]', content: 'x2' }];
    next.env.backend = 'wasm';
    next.packages['@tensorflow/tfjs'] = '4.23.0';
    expect(explainChange(base, next)).toEqual([
      'param sae.lr: 0.001 → 0.002',
      'code: lib/sae/train.ts changed',
      'package @tensorflow/tfjs: 4.22.0 → 4.23.0',
      'env backend: cpu → wasm',
      'input collect changed',
      'input all: x[k=2] added',
    ]);
    expect(fingerprintOf(base)).not.toBe(fingerprintOf(next));
    expect(fingerprintOf(base)).toBe(fingerprintOf(structuredClone(base)));
  });
});
