/** What a test copies to get a runnable checkout of this project (code, params, docs read as assets). */
export const REPO_FILES = ['base', 'pipeline', 'lib', 'stages', 'docs', 'scripts', 'params.yaml', 'params.smoke.yaml', 'params.schema.json', 'package.json', 'package-lock.json', 'tsconfig.json'];
