/**
 * Issue 14's data-parallel lever for forward passes, measured: one onnxruntime-node session
 * with 2 intra-op threads (goodnet's default on 2 cores) against 2 worker threads, each with
 * its own 1-thread session on the same graph, taking every other batch (one batch in flight
 * per worker; inputs copied to the worker, scores copied back, as a pool would). goodnet's
 * exports of full DeepID (55x47x3 -> 1283) and the lab VGG-BN and ResNet (28x28x1 -> 10),
 * random weights, batch 64 (and 256), interleaved rounds. Images per wall second, and the
 * ratio workers / one session.
 *
 *   npx tsc -p bench && node dist/bench/bench/ort_data_parallel.js [--rounds N (2)] [--batches N (40)]
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

const OPTIONS = (threads: number): ort.InferenceSession.SessionOptions =>
  ({ intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });

interface Job { id: number; x: Float32Array; n: number }

if (!isMainThread) {
  const { bytes, shape } = workerData as { bytes: Uint8Array; shape: number[] };
  const sess = await ort.InferenceSession.create(bytes, OPTIONS(1));
  const input = sess.inputNames[0]!, output = sess.outputNames[0]!;
  parentPort!.on('message', (job: Job) => {
    void sess.run({ [input]: new ort.Tensor('float32', job.x, [job.n, ...shape]) }).then((out) => {
      const y = (out[output]!.data as Float32Array).slice();
      parentPort!.postMessage({ id: job.id, y }, [y.buffer as ArrayBuffer]);
    });
  });
  parentPort!.postMessage('ready');
} else {
  const { initBackend } = await import('../src/engine/backend.js');
  const { buildArchitecture, deepId } = await import('../src/models/index.js');
  const { describeModel } = await import('../src/io/model.js');
  const { ortExportOf } = await import('../src/eval/ort_model.js');
  const arg = (name: string, d: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : d;
  };
  const ROUNDS = arg('rounds', 2), BATCHES = arg('batches', 40);
  await initBackend('wasm');
  const nets = [
    ['full DeepID 55x47x3 -> 1283', deepId({ inputShape: [55, 47, 3], numClasses: 1283, seed: 0 })],
    ['lab VGG-BN 28x28x1 -> 10', buildArchitecture('vgg', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 })],
    ['lab ResNet 28x28x1 -> 10', buildArchitecture('resnet', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 })],
  ] as const;
  console.log('| model | batch | one session, 2 intra-op threads | 2 workers x 1-thread session | workers / one session |');
  console.log('|:--|--:|--:|--:|--:|');
  for (const [name, net] of nets) {
    const model = describeModel(net, name, 'tfjs');
    const bytes = ortExportOf(model).bytes;
    const shape = [...model.inputShape];
    const per = shape.reduce((a, b) => a * b, 1);
    for (const B of [64, 256]) {
      const nb = B === 64 ? BATCHES : Math.max(2, Math.round(BATCHES / 4));
      const x = new Float32Array(nb * B * per);
      for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) >>> 24) / 255;
      const batch = (b: number): Float32Array => x.slice(b * B * per, (b + 1) * B * per);
      const one = await ort.InferenceSession.create(bytes, OPTIONS(2));
      const input = one.inputNames[0]!;
      const workers = await Promise.all([0, 1].map(() => new Promise<Worker>((resolve) => {
        const w = new Worker(new URL(import.meta.url), { workerData: { bytes, shape } });
        w.once('message', () => resolve(w));
      })));
      let next = 0;
      const waiting = new Map<number, () => void>();
      for (const w of workers) w.on('message', (m: { id: number }) => { waiting.get(m.id)!(); waiting.delete(m.id); });
      const send = (w: Worker, b: number): Promise<void> => new Promise((resolve) => {
        const id = next++;
        waiting.set(id, resolve);
        const xb = batch(b);
        w.postMessage({ id, x: xb, n: B }, [xb.buffer as ArrayBuffer]);
      });
      const timeOne = async (): Promise<number> => {
        const t0 = performance.now();
        for (let b = 0; b < nb; b++) await one.run({ [input]: new ort.Tensor('float32', batch(b), [B, ...shape]) });
        return (nb * B) / ((performance.now() - t0) / 1000);
      };
      const timeWorkers = async (): Promise<number> => {
        const t0 = performance.now();
        await Promise.all(workers.map(async (w, i) => { for (let b = i; b < nb; b += 2) await send(w, b); }));
        return (nb * B) / ((performance.now() - t0) / 1000);
      };
      await one.run({ [input]: new ort.Tensor('float32', batch(0), [B, ...shape]) });
      await Promise.all(workers.map((w, i) => send(w, i)));
      const a: number[] = [], d: number[] = [];
      for (let r = 0; r < ROUNDS; r++) { a.push(await timeOne()); d.push(await timeWorkers()); }
      const best = (v: number[]): number => Math.max(...v);
      console.log(`| ${name} | ${B} | ${best(a).toFixed(0)} img/s | ${best(d).toFixed(0)} img/s | ${(best(d) / best(a)).toFixed(2)}x |`);
      await one.release();
      await Promise.all(workers.map((w) => w.terminate()));
    }
  }
}
