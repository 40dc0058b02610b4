/**
 * A real Redis for tests: Debian's redis-server on a free loopback port. Absent binary = failure.
 * `tls: true`: TLS only (no plain port), with a throw-away CA and server certificate made by the
 * openssl CLI; clients trust the CA through NODE_EXTRA_CA_CERTS (in `env`), as a deployment would.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { waitFor } from './helpers.ts';

export interface RedisFixture {
  url: string;
  port: number;
  /** Environment a client needs (the CA for TLS). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export interface RedisOptions {
  password?: string;
  tls?: boolean;
}

/** A CA and a server certificate for 127.0.0.1 signed by it, in a fresh temp dir. */
function makeCerts(): { dir: string; ca: string; cert: string; key: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-tls-'));
  const f = (n: string): string => path.join(dir, n);
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test CA', '-keyout', f('ca.key'), '-out', f('ca.crt'));
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('server.key'), '-out', f('server.csr'));
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext.cnf'), '-out', f('server.crt'));
  return { dir, ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisFixture> {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) {
    throw new Error('redis-server is not installed (apt-get install -y redis-server; .ci/run does it): the BullMQ tests need a real Redis');
  }
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const certs = opts.tls ? makeCerts() : undefined;
  if (certs) args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no');
  else args.push('--port', String(port));
  if (opts.password) args.push('--requirepass', opts.password);
  const child: ChildProcess = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('Ready to accept connections') || child.exitCode !== null, 'redis-server to start', 20_000);
  if (child.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
  const auth = opts.password ? `:${opts.password}@` : '';
  return {
    url: `${certs ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`,
    port,
    env: certs ? { NODE_EXTRA_CA_CERTS: certs.ca } : {},
    async stop() {
      if (child.exitCode === null) {
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await done;
      }
      if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
    },
  };
}
