/**
 * Child process for the kill test (train.test.ts): trains with frequent checkpoints and prints
 * "step N" after each step; the parent kills it with SIGKILL mid-run.
 * usage: node --import tsx test/lib/sae/killable.ts <checkpointDir>
 */
import { TEST_BACKEND } from './../testBackend.ts';
import { MemoryRows } from '../../../lib/activations.ts';
import { initBackend } from '../../../lib/backend.ts';
import { trainSae } from '../../../lib/sae/train.ts';
import { killConfig, killData } from './killcfg.ts';

await initBackend(TEST_BACKEND, { quiet: true });
const P = killData();
await trainSae(new MemoryRows(P.d, P.x, P.g), { ...killConfig, checkpointDir: process.argv[2], checkpointEverySteps: 2 }, {
  onStep: (s) => {
    process.stdout.write(`step ${s}\n`);
    // slow down so the parent can kill mid-run
    const until = Date.now() + 60;
    while (Date.now() < until) {
      /* spin */
    }
  },
});
process.stdout.write('done\n');
