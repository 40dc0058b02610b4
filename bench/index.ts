/**
 * `npm run bench -- <name> [args]` runs bench/<name>.ts (its default export, or its top level).
 * Without a name, lists the benchmarks.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const names = (await fs.readdir(dir))
  .filter((f) => f.endsWith('.ts') && f !== 'index.ts' && !f.endsWith('.d.ts'))
  .map((f) => f.slice(0, -3))
  .sort();

const [name, ...rest] = process.argv.slice(2);
if (!name || name === '--help' || name === '-h') {
  console.log(`usage: npm run bench -- <name> [args]\navailable: ${names.join(', ') || '(none)'}`);
  process.exit(name ? 0 : 2);
}
if (!names.includes(name)) {
  console.error(`unknown benchmark "${name}"; available: ${names.join(', ')}`);
  process.exit(2);
}
process.argv = [process.argv[0], path.join(dir, `${name}.ts`), ...rest];
const mod = (await import(pathToFileURL(path.join(dir, `${name}.ts`)).href)) as { default?: (args: string[]) => Promise<void> };
if (typeof mod.default === 'function') await mod.default(rest);
