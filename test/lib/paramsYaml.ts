/** params.yaml as the tests read it. */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

/**
 * params.yaml's `section` values of the options in `defaults`, each under its snake_case name
 * (auxAlpha → aux_alpha, bDecInit → b_dec_init): a library default equals the params value only
 * if the option is named as the param.
 */
export function paramsYamlValues(section: string, defaults: object): Record<string, unknown> {
  const params = YAML.parse(fs.readFileSync(path.join(import.meta.dirname, '../../params.yaml'), 'utf8'))[section];
  const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return Object.fromEntries(Object.keys(defaults).map((name) => [name, params[snake(name)]]));
}
