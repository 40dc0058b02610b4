/** The params' TypeScript type, generated from params.schema.json (one source of truth). */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { compile } from 'json-schema-to-typescript';
import { readSchema } from './params.ts';

export const GENERATED_BANNER = '/* Generated from params.schema.json by `npx tsx pipeline/cli.ts types`. Do not edit. */';

export async function generateParamsType(schemaFile: string): Promise<string> {
  const schema = await readSchema(schemaFile);
  // The root type is always named Params (a root title would rename it).
  const { title: _title, ...root } = schema;
  return compile(root as Parameters<typeof compile>[0], 'Params', {
    ignoreMinAndMaxItems: true,
    bannerComment: GENERATED_BANNER,
    additionalProperties: false,
    cwd: path.dirname(schemaFile),
    format: true,
    style: { singleQuote: true, printWidth: 110 },
  });
}

export interface TypesResult {
  file: string;
  upToDate: boolean;
  written: boolean;
}

/** Write <stagesDir>/params.gen.ts, or (check) only report whether it is up to date. */
export async function writeParamsType(schemaFile: string, outFile: string, check: boolean): Promise<TypesResult> {
  const text = await generateParamsType(schemaFile);
  const current = await fs.readFile(outFile, 'utf8').catch(() => undefined);
  const upToDate = current === text;
  if (check || upToDate) return { file: outFile, upToDate, written: false };
  await fs.mkdir(path.dirname(outFile), { recursive: true });
  await fs.writeFile(outFile, text);
  return { file: outFile, upToDate, written: true };
}
