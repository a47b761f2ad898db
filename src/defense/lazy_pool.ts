/**
 * The lazy kernel (lazy_kernel.ts) on two threads: this one and one helper worker, started by
 * `startLazyWorker` while the head runs (like the onnxruntime session of ortsweep.ts) and kept
 * for the next sweep (asc, then desc). The images of both sets are split in two halves; the
 * worker sweeps the second half while this thread sweeps the first. Both run the same float64
 * code on the same values, so the labels and flags are the same as on one thread (tested).
 * With one core, in the browser, for a few images, or if the worker fails, everything runs here.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { pooledShare, type PooledWeights } from './lazy_kernel.js';
import type { LazyJob } from './lazy_worker.js';
import type { ShareResult } from './fastsweep.js';

/** Below this many images in all, one thread (a message round trip and a cold second JIT cost more). */
export const LAZY_SPLIT_MIN = 4096;

interface Reply { id: number; labels?: Int32Array; ambiguous?: Uint8Array; computed?: number; error?: string }

let worker: Worker | null = null;
let broken = false;
let nextId = 0;
const pending = new Map<number, (r: Reply) => void>();

function drop(): void {
  broken = true;
  worker = null;
  for (const [id, done] of pending) done({ id, error: 'worker stopped' });
  pending.clear();
}

/** Starts the helper worker (no-op with one core, in the browser, or once it has failed). Never throws. */
export function startLazyWorker(): void {
  if (worker || broken || availableParallelism() < 2) return;
  try {
    // No inherited node flags: `node -e` code, --input-type or heap flags would break the worker.
    const w = new Worker(new URL('./lazy_worker.js', import.meta.url), { execArgv: [] });
    w.on('message', (r: Reply) => {
      const done = pending.get(r.id);
      pending.delete(r.id);
      done?.(r);
    });
    w.on('error', drop);
    w.on('exit', drop);
    w.unref(); // after the listeners (adding one refs it again): an idle helper never keeps the process alive
    worker = w;
  } catch {
    broken = true;
  }
}

/** Stops the helper worker (tests; the process never waits for it anyway). */
export async function stopLazyWorker(): Promise<void> {
  const w = worker;
  worker = null;
  if (w) {
    w.removeAllListeners('exit');
    await w.terminate();
  }
}

function ask(w: Worker, job: Omit<LazyJob, 'id'>): Promise<Reply> {
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, (r) => {
      if (pending.size === 0) w.unref();
      resolve(r);
    });
    w.ref(); // an answer is awaited
    w.postMessage({ ...job, id });
  });
}

/**
 * pooledShare over several sets (per-channel values fs[s], (ns[s], c)): per set, labels and
 * flags at steps 0..last, (last + 1) x ns[s] step-major. Uses the helper worker when it was
 * started, `split` allows it and there are at least LAZY_SPLIT_MIN images.
 */
export async function lazyShares(t: PooledWeights, fs: Float32Array[], ns: number[], order: number[], last: number, tol: number, split = true): Promise<ShareResult[]> {
  const { c } = t;
  const out: ShareResult[] = ns.map((n) => ({ labels: new Int32Array((last + 1) * n), ambiguous: new Uint8Array((last + 1) * n), computed: 0 }));
  const total = ns.reduce((a, b) => a + b, 0);
  const w = split ? worker : null;
  const half = w && total >= LAZY_SPLIT_MIN ? Math.floor(total / 2) : total;
  // Set s covers images [a_s, a_s + n_s) of all; this thread takes [0, half), the worker the rest.
  const starts = ns.map((_, s) => ns.slice(0, s).reduce((a, b) => a + b, 0));
  const theirs = ns.map((n, s) => ({ from: Math.max(0, Math.min(n, half - starts[s]!)), to: n }));
  let reply: Promise<Reply> | null = null;
  let f2: Float32Array | null = null;
  if (half < total) {
    f2 = new Float32Array((total - half) * c);
    let o = 0;
    ns.forEach((_, s) => {
      const { from, to } = theirs[s]!;
      f2!.set(fs[s]!.subarray(from * c, to * c), o * c);
      o += to - from;
    });
    reply = ask(w!, { t: { c: t.c, u: t.u, kernel: t.kernel, bias: t.bias }, f: f2, m: total - half, order, last, tol });
  }
  ns.forEach((n, s) => {
    const mine = theirs[s]!.from;
    if (mine > 0) out[s]!.computed! += pooledShare(t, fs[s]!, mine, 0, n, order, last, tol, out[s]!.labels, out[s]!.ambiguous);
  });
  if (!reply) return out;
  const r = await reply;
  const m2 = total - half;
  let o = 0;
  ns.forEach((n, s) => {
    const { from, to } = theirs[s]!;
    const cnt = to - from;
    if (cnt === 0) return;
    if (r.error || !r.labels || !r.ambiguous) {
      // The worker failed: its share here (the same code, the same labels).
      out[s]!.computed! += pooledShare(t, f2!.subarray(o * c, (o + cnt) * c), cnt, from, n, order, last, tol, out[s]!.labels, out[s]!.ambiguous);
    } else {
      for (let k = 0; k <= last; k++) {
        out[s]!.labels.set(r.labels.subarray(k * m2 + o, k * m2 + o + cnt), k * n + from);
        out[s]!.ambiguous.set(r.ambiguous.subarray(k * m2 + o, k * m2 + o + cnt), k * n + from);
      }
    }
    o += cnt;
  });
  if (!r.error && r.computed !== undefined) out[out.length - 1]!.computed! += r.computed;
  return out;
}
