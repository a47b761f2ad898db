/** worker_threads entry for fastsweep.ts: one tfjs wasm engine, one share of the images. */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../engine/backend.js';
import { sweepShare, type DeepIdTail } from './fastsweep.js';

const d = workerData as { t: DeepIdTail; x: Float32Array; n: number; order: number[]; last: number; tol: number; skip: boolean };
try {
  await initBackend('wasm');
  const r = await sweepShare(d.t, d.x, d.n, d.order, d.last, d.tol, d.skip);
  parentPort!.postMessage(r, [r.labels.buffer as ArrayBuffer, r.ambiguous.buffer as ArrayBuffer]);
} catch (e) {
  parentPort!.postMessage({ error: e instanceof Error ? e.stack ?? e.message : String(e) });
}
