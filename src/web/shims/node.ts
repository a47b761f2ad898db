/**
 * The small Node built-ins goodnet's library code touches, for the web bundle: `node:os`,
 * `node:crypto` (sha256 only, by @noble/hashes), `node:module`, `node:url`, and stubs for what
 * never runs in the page (worker_threads, child_process; sharp and onnxruntime-node are not bundled).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { decode as decodePngBytes } from 'fast-png';
import jpeg from 'jpeg-js';

/**
 * PNG/JPEG to 8-bit pixels in the page, synchronously, where the CLI uses sharp (native): PNG by
 * fast-png (the same pixels), JPEG by jpeg-js (a different IDCT from libjpeg-turbo's: a pixel can
 * differ by a little). 16-bit PNGs are reduced to 8 bits; palettes are expanded.
 */
export function decodeImageSync(bytes: Uint8Array, maxPixels: number): { data: Uint8Array; width: number; height: number; channels: number } {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) {
    const img = decodePngBytes(bytes);
    if (img.width * img.height > maxPixels) throw new Error(`image has ${img.width * img.height} pixels, over the limit of ${maxPixels}`);
    let data: Uint8Array;
    let channels = img.channels;
    if (img.palette) {
      const pal = img.palette;
      channels = pal[0]!.length;
      data = new Uint8Array(img.width * img.height * channels);
      const idx = img.data;
      for (let i = 0; i < img.width * img.height; i++) data.set(pal[idx[i]!]!, i * channels);
    } else if (img.depth === 16) {
      data = Uint8Array.from(img.data as Uint16Array, (v) => v >> 8);
    } else if (img.depth === 8) {
      data = img.data as Uint8Array;
    } else {
      throw new Error(`PNG bit depth ${img.depth} is not read in the browser`);
    }
    return { data, width: img.width, height: img.height, channels };
  }
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: maxPixels / 1e6, tolerantDecoding: false });
  const channels = img.data.length / (img.width * img.height);
  return { data: img.data, width: img.width, height: img.height, channels };
}

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

// node:module. require('synckit') (images.ts's synchronous decoder) gets decodeImageSync below.
export function createRequire(): { resolve(id: string): string } & ((id: string) => unknown) {
  const req = ((id: string) => {
    if (id === 'synckit') return { createSyncFn: () => decodeImageSync };
    throw new Error(`${id} is not available in the browser`);
  }) as { resolve(id: string): string } & ((id: string) => unknown);
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
export class MessageChannel {
  constructor() {
    throw new Error('worker_threads are not available in the browser');
  }
}
export const receiveMessageOnPort = (): undefined => undefined;
export const parentPort = null;
export const workerData = undefined;
export const isMainThread = true;
export function spawn(): never {
  throw new Error('child processes are not available in the browser');
}
export const execFileSync = spawn;
export const execFile = spawn;

export default { tmpdir, homedir, availableParallelism, cpus, totalmem, freemem, platform, EOL, createHash, randomBytes, createRequire, fileURLToPath, pathToFileURL };
