/**
 * A worker thread of the ort training engine's data-parallel steps (models/ort_shards.ts).
 * It holds onnxruntime sessions of training graphs and runs one per request, reading its
 * images, labels and the net's weights from shared memory (copied into the session's own
 * arrays: onnxruntime-node refuses shared ones) and writing every output there: a step costs
 * no message. Requests come through a shared control word (Atomics.wait here, Atomics.notify there); a new session's graph comes as a
 * message read synchronously when the control word says so.
 */
import { workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { CTRL, SETUP, STOP, receiveSoon, writeOutputs, type SessionSetup, type WorkerInit } from './ort_shards.js';

async function main(init: WorkerInit): Promise<void> {
  const ctrl = new Int32Array(init.ctrl);
  const weights = new Float32Array(init.weights);
  const xs = new Float32Array(init.x);
  const ys = new Float32Array(init.y);
  const extra = new Float32Array(init.extra);
  const out = new Float32Array(init.out);
  // onnxruntime-node refuses typed arrays on shared memory: each feed is a private array, refreshed from the shared one per run.
  const sessions: { session: ort.InferenceSession; feeds: Record<string, ort.Tensor>; copies: [Float32Array, Float32Array][]; outputs: SessionSetup['outputs'] }[] = [];
  let seen = 0;
  for (;;) {
    Atomics.wait(ctrl, CTRL.REQUEST, seen);
    seen = Atomics.load(ctrl, CTRL.REQUEST);
    const command = Atomics.load(ctrl, CTRL.COMMAND);
    if (command === STOP) return;
    let failed = 0;
    try {
      if (command === SETUP) {
        const s = receiveSoon(init.port) as SessionSetup | undefined;
        if (!s) throw new Error('no session set-up message');
        const session = await ort.InferenceSession.create(s.bytes, s.options);
        const [H, W, C] = s.shape;
        const feeds: Record<string, ort.Tensor> = {};
        const copies: [Float32Array, Float32Array][] = [];
        const feed = (name: string, shared: Float32Array, dims: number[]) => {
          const own = new Float32Array(shared.length);
          copies.push([own, shared]);
          feeds[name] = new ort.Tensor('float32', own, dims);
        };
        feed('x', xs.subarray(0, s.n * H * W * C), [s.n, H, W, C]);
        feed('y', ys.subarray(0, s.n * s.classes), [s.n, s.classes]);
        for (const w of s.weights) feed(w.name, weights.subarray(w.offset, w.offset + w.dims.reduce((p, q) => p * q, 1)), w.dims);
        for (const e of s.extras) feed(e.name, extra.subarray(e.offset, e.offset + e.dims.reduce((p, q) => p * q, 1)), e.dims);
        sessions[s.index] = { session, feeds, copies, outputs: s.outputs };
      } else {
        const s = sessions[command];
        if (!s) throw new Error(`no session ${command}`);
        for (const [own, shared] of s.copies) own.set(shared);
        const r = await s.session.run(s.feeds);
        try {
          writeOutputs(r, s.outputs, out);
        } finally {
          for (const t of Object.values(r)) t.dispose();
        }
      }
    } catch (e) {
      failed = 1;
      init.port.postMessage((e as Error).message.split('\n')[0]);
    }
    Atomics.store(ctrl, CTRL.FAILED, failed);
    Atomics.store(ctrl, CTRL.DONE, seen);
    Atomics.notify(ctrl, CTRL.DONE);
  }
}

await main(workerData as WorkerInit);
