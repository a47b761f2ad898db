/** Globals Node code expects, injected into the web bundle by esbuild (scripts/build-web.mjs). */
import { Buffer } from 'buffer';

const noop = () => {};
export const process = {
  pid: 1,
  version: 'browser',
  env: {} as Record<string, string | undefined>,
  argv: ['goodnet-web'],
  platform: 'browser',
  versions: {} as Record<string, string>,
  cwd: () => '/',
  on: noop,
  off: noop,
  once: noop,
  removeListener: noop,
  emitWarning: noop,
  exit: (code?: number): never => {
    throw new Error(`exit ${code ?? 0}`);
  },
  stdout: { write: (s: string) => (console.log(s), true), isTTY: false },
  stderr: { write: (s: string) => (console.warn(s), true), isTTY: false },
  hrtime: { bigint: () => BigInt(Math.round(performance.now() * 1e6)) },
  memoryUsage: () => ({ rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 }),
};
export { Buffer };

/** Node's setImmediate (the library yields with it between batches): a message-channel hop, no 4 ms timer clamp. */
export function setImmediate(f: (...args: unknown[]) => void, ...args: unknown[]): number {
  const c = new MessageChannel();
  c.port1.onmessage = () => {
    c.port1.close();
    f(...args);
  };
  c.port2.postMessage(0);
  return 0;
}
