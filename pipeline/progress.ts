/**
 * Progress display: cli-progress bars on a TTY (one per running instance, plus the overall count),
 * plain lines otherwise (CI logs): start/finish of every instance and at most one progress line
 * per instance every 10 seconds.
 */
import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';
import { formatSeconds } from './util.ts';

/** cli-progress (16 modules) is loaded only for a TTY display: a run with plain lines never needs it. */
const require = createRequire(import.meta.url);

export interface Reporter {
  /** total: instances in the run; labelWidth: longest label (to align bars). */
  begin(total: number, labelWidth?: number): void;
  start(label: string, note: string): void;
  progress(label: string, done: number, total: number, info?: Record<string, string | number>): void;
  finish(label: string, line: string): void;
  /** An instance found in the cache (counts towards the overall bar only). */
  cached(label: string): void;
  /** Print a line (above the bars on a TTY). */
  line(text: string): void;
  stop(): void;
}

interface Track {
  started: number;
  firstAt?: number;
  firstDone?: number;
  lastLine: number;
}

function rateAndEta(t: Track, done: number, total: number): { rate: number; eta: number | undefined } {
  const now = Date.now();
  if (t.firstAt === undefined) {
    t.firstAt = now;
    t.firstDone = done;
  }
  const secs = (now - t.firstAt) / 1000;
  const rate = secs > 0 ? (done - t.firstDone!) / secs : 0;
  return { rate, eta: rate > 0 ? (total - done) / rate : undefined };
}

function fmtInfo(info?: Record<string, string | number>): string {
  if (!info) return '';
  return Object.entries(info)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`)
    .join(' ');
}

function fmtRate(rate: number): string {
  return rate >= 100 ? rate.toFixed(0) : rate >= 1 ? rate.toFixed(1) : rate.toPrecision(2);
}

export function plainReporter(write: (s: string) => void = (s) => process.stdout.write(`${s}\n`), everyMs = 10_000): Reporter {
  const tracks = new Map<string, Track>();
  return {
    begin() {},
    start(label, note) {
      tracks.set(label, { started: Date.now(), lastLine: Date.now() });
      write(`▶ ${label}${note ? `: ${note}` : ''}`);
    },
    progress(label, done, total, info) {
      const t = tracks.get(label);
      if (!t) return;
      const { rate, eta } = rateAndEta(t, done, total);
      if (Date.now() - t.lastLine < everyMs) return;
      t.lastLine = Date.now();
      const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
      write(`  ${label} ${pct}% (${done}/${total}) ${fmtRate(rate)}/s ETA ${eta === undefined ? '?' : formatSeconds(eta)} ${fmtInfo(info)}`.trimEnd());
    },
    finish(label, line) {
      tracks.delete(label);
      write(line);
    },
    cached() {},
    line: write,
    stop() {},
  };
}

export function ttyReporter(): Reporter {
  const cliProgress = require('cli-progress') as typeof CliProgress;
  const multi = new cliProgress.MultiBar(
    {
      format: '{label} |{bar}| {percentage}% {value}/{total} {rate}/s ETA {eta_formatted} {info}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let overall: CliProgress.SingleBar | undefined;
  const bars = new Map<string, { bar: CliProgress.SingleBar; track: Track }>();
  let finished = 0;
  let width = 0;
  return {
    begin(total, labelWidth = 0) {
      width = Math.min(labelWidth, 48);
      overall = multi.create(total, 0, { label: 'pipeline'.padEnd(width), rate: '-', info: '' }, { format: '{label} |{bar}| {value}/{total} instances {info}' });
    },
    start(label, note) {
      multi.log(`▶ ${label}${note ? `: ${note}` : ''}\n`);
      const bar = multi.create(1, 0, { label: label.padEnd(width), rate: '-', info: '' });
      bars.set(label, { bar, track: { started: Date.now(), lastLine: 0 } });
    },
    progress(label, done, total, info) {
      const b = bars.get(label);
      if (!b) return;
      const { rate } = rateAndEta(b.track, done, total);
      b.bar.setTotal(total);
      b.bar.update(done, { rate: fmtRate(rate), info: fmtInfo(info) });
    },
    finish(label, line) {
      const b = bars.get(label);
      if (b) {
        multi.remove(b.bar);
        bars.delete(label);
      }
      finished++;
      overall?.update(finished);
      multi.log(`${line}\n`);
    },
    cached() {
      finished++;
      overall?.update(finished);
    },
    line(text) {
      multi.log(`${text}\n`);
    },
    stop() {
      multi.stop();
    },
  };
}
