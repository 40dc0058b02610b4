/**
 * The blinded rating server (node:http): GET / the page, GET /api/items the latents to rate
 * (opaque id, contexts, promoted tokens: never the architecture or instance), POST /api/rate
 * {rater, item, score 1–5, label?} → 200 {ok, queued} or 400/404/413 {error} with nothing written.
 */
import http from 'node:http';
import type { RateItem } from './items.ts';
import type { Rating, RatingsStore } from './store.ts';
import { RATE_PAGE } from './page.ts';

export const MAX_BODY = 4096;
export const MAX_LABEL = 200;

export interface RateServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, `request body larger than ${MAX_BODY} bytes`));
        req.resume();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

/** Validates a POST /api/rate body against the items; throws HttpError. */
export function parseRating(body: string, items: Map<string, RateItem>, now = new Date()): Rating {
  let j: any;
  try {
    j = JSON.parse(body);
  } catch {
    throw new HttpError(400, 'malformed JSON');
  }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) throw new HttpError(400, 'expected a JSON object {rater, item, score, label?}');
  if (typeof j.rater !== 'string' || !/^[\w .@-]{1,64}$/.test(j.rater)) throw new HttpError(400, 'rater: 1–64 letters, digits, spaces or . @ - _');
  if (!Number.isInteger(j.score) || j.score < 1 || j.score > 5) throw new HttpError(400, `score must be an integer 1–5, got ${JSON.stringify(j.score)}`);
  if (j.label !== undefined && (typeof j.label !== 'string' || j.label.length > MAX_LABEL)) throw new HttpError(400, `label: a string of at most ${MAX_LABEL} characters`);
  const it = typeof j.item === 'string' ? items.get(j.item) : undefined;
  if (!it) throw new HttpError(400, `unknown latent ${JSON.stringify(j.item)}: not one of the latents this server shows`);
  return { rater: j.rater, instance: it.instance, arch: it.arch, beta: it.beta, k: it.k, seed: it.seed, latent: it.latent, score: j.score, label: (j.label ?? '').trim(), time: now.toISOString() };
}

export function startRateServer(items: RateItem[], store: RatingsStore, opts: { port?: number; host?: string } = {}): Promise<RateServer> {
  const byId = new Map(items.map((it) => [it.id, it]));
  const publicItems = items.map((it, i) => ({ id: it.id, n: i + 1, contexts: it.contexts, promoted: it.promoted }));
  const send = (res: http.ServerResponse, status: number, body: unknown, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
  const timer = setInterval(() => void store.flush().catch(() => {}), 2000);
  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET' && url.pathname === '/') return send(res, 200, RATE_PAGE, 'text/html; charset=utf-8');
      if (req.method === 'GET' && url.pathname === '/api/items') return send(res, 200, { items: publicItems });
      if (req.method === 'POST' && url.pathname === '/api/rate') {
        const rating = parseRating(await readBody(req), byId);
        const waiting = await store.add([rating]);
        return send(res, 200, { ok: true, queued: waiting > 0, waiting });
      }
      throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (!res.headersSent) send(res, status, { error: (e as Error).message });
      if (status === 413) req.destroy();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        url: `http://${opts.host ?? '127.0.0.1'}:${port}/`,
        close: async () => {
          clearInterval(timer);
          await new Promise<void>((r) => server.close(() => r()));
          server.closeAllConnections?.();
          await store.flush().catch(() => {});
        },
      });
    });
  });
}
