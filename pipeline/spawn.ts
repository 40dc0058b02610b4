/**
 * One stage instance in a child process (the child protocol of protocol.ts): used by the local
 * executor of the runner and by `npm run worker`, so a remote instance runs exactly as a local one.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { WriteStream } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildMessage, StartMessage } from './protocol.ts';
import { withMallocEnv } from '../base/malloc.ts';

const require = createRequire(import.meta.url);
const CHILD_SCRIPT = fileURLToPath(new URL('./child.ts', import.meta.url));
const TSX_LOADER = pathToFileURL(require.resolve('tsx')).href;

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not start. */
  startError?: string;
}

/** Fork child.ts, send `start`, pipe its output to `log`, hand each message to `onMessage`. */
export function spawnStage(
  start: StartMessage,
  opts: { cwd: string; env: Record<string, string>; log: WriteStream; onMessage: (m: ChildMessage) => void; children: Set<ChildProcess> },
): Promise<ChildExit> {
  const child = fork(CHILD_SCRIPT, [], {
    cwd: opts.cwd,
    execArgv: ['--import', TSX_LOADER],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'advanced',
    // Own process group: an interrupt stops the stage and anything it started (see killStages).
    detached: true,
    env: withMallocEnv({ ...process.env, ...opts.env }),
  });
  opts.children.add(child);
  child.stdout!.pipe(opts.log, { end: false });
  child.stderr!.pipe(opts.log, { end: false });
  child.on('message', opts.onMessage);
  child.send(start);
  return new Promise<ChildExit>((resolve) => {
    let startError: string | undefined;
    child.on('error', (e) => {
      startError ??= `could not start the child process: ${e.message}`;
    });
    child.on('close', (code, signal) => {
      opts.children.delete(child);
      resolve({ code, signal, startError });
    });
  });
}

/** SIGTERM every stage process group now, SIGKILL what is left after `graceMs`. */
export function killStages(children: Set<ChildProcess>, graceMs = 5000): void {
  const killGroup = (c: ChildProcess, sig: NodeJS.Signals): void => {
    try {
      process.kill(-c.pid!, sig);
    } catch {
      c.kill(sig);
    }
  };
  for (const c of children) killGroup(c, 'SIGTERM');
  const force = setTimeout(() => {
    for (const c of children) killGroup(c, 'SIGKILL');
  }, graceMs);
  force.unref();
}
