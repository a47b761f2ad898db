/**
 * The small Node built-ins goodnet's library code touches, for the web bundle: `node:os`,
 * `node:crypto` (sha256 only, by @noble/hashes), `node:module`, `node:url`, and stubs for what
 * never runs in the page (worker_threads, child_process; sharp and onnxruntime-node are not bundled).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

// node:os: one thread, an in-memory /tmp.
export const tmpdir = (): string => '/tmp';
export const homedir = (): string => '/';
export const availableParallelism = (): number => 1;
export const cpus = (): unknown[] => [{}];
export const totalmem = (): number => 2 ** 31;
export const freemem = (): number => 2 ** 31;
export const platform = (): string => 'browser';
export const EOL = '\n';

// node:crypto
export function createHash(algorithm: string) {
  if (algorithm !== 'sha256') throw new Error(`hash ${algorithm} is not available in the browser`);
  const h = sha256.create();
  return {
    update(chunk: Uint8Array | string) {
      h.update(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
      return this;
    },
    digest(enc?: string) {
      const d = h.digest();
      return enc === 'hex' ? bytesToHex(d) : d;
    },
  };
}
export const randomBytes = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

// node:module
export function createRequire(): { resolve(id: string): string } & ((id: string) => never) {
  const req = ((id: string) => {
    throw new Error(`${id} is not available in the browser`);
  }) as { resolve(id: string): string } & ((id: string) => never);
  // Package files (the report's fonts, resvg's wasm) are looked for where the worker puts them.
  req.resolve = (id: string) => `/node_modules/${id}`;
  return req;
}

// node:url
export const fileURLToPath = (u: string | URL): string => (typeof u === 'string' ? new URL(u) : u).pathname;
export const pathToFileURL = (path: string): URL => new URL(`file://${path}`);

// node:worker_threads, node:child_process: never reached in the page (one thread, no processes).
export class Worker {
  constructor() {
    throw new Error('worker_threads are not available in the browser');
  }
}
export const parentPort = null;
export const workerData = undefined;
export const isMainThread = true;
export function spawn(): never {
  throw new Error('child processes are not available in the browser');
}
export const execFileSync = spawn;
export const execFile = spawn;

export default { tmpdir, homedir, availableParallelism, cpus, totalmem, freemem, platform, EOL, createHash, randomBytes, createRequire, fileURLToPath, pathToFileURL };
