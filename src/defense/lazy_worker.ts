/** worker_threads entry for lazy_pool.ts: runs pooledShare on the shares the main thread sends. */
import { parentPort } from 'node:worker_threads';
import { pooledShare, type PooledWeights } from './lazy_kernel.js';

export interface LazyJob {
  id: number;
  t: PooledWeights;
  f: Float32Array;
  m: number;
  order: number[];
  last: number;
  tol: number;
}

parentPort!.on('message', (j: LazyJob) => {
  try {
    const labels = new Int32Array((j.last + 1) * j.m);
    const ambiguous = new Uint8Array((j.last + 1) * j.m);
    const computed = pooledShare(j.t, j.f, j.m, 0, j.m, j.order, j.last, j.tol, labels, ambiguous);
    parentPort!.postMessage({ id: j.id, labels, ambiguous, computed }, [labels.buffer, ambiguous.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: j.id, error: e instanceof Error ? e.stack ?? e.message : String(e) });
  }
});
