/**
 * Which engine `--train-engine auto` picks for a model file, and how fast each engine trains
 * it: goodnet's `train()` (the loop of attack / fineprune) on the tfjs-wasm engine and on the
 * ort engine, 1 thread each, side by side in one run, on random images of the model's input
 * shape (pixels 0..255, scale 255) with random labels, Adam 1e-4, batch 64. Timed from the
 * end of the first batch (both engines' set-up left out), best of --repeat interleaved runs.
 * Also each engine's loss after the epoch: the two run the same step, so it agrees to float
 * rounding unless the model draws random numbers (Dropout).
 *
 *   npx tsc -p bench && node dist/bench/bench/train_models.js [--batches 10] [--repeat 2] [MODEL ...]
 *
 * Default models: every ONNX and Keras 3 fixture of test/fixtures and, when present, the real
 * CSAW-HackML DeepID of ../shared/csaw (55x47x3, 1283 classes).
 */
import { existsSync, readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/io/model.js';
import { resolveTrainEngine, type TrainEngineName } from '../src/models/ort_train.js';
import { train } from '../src/models/train.js';

const args = process.argv.slice(2);
const opt = (name: string, d: number): number => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return d;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  return v;
};
const BATCHES = opt('batches', 10), REPEAT = opt('repeat', 2), BATCH = 64;
const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = (dir: string, ext: RegExp) => (existsSync(join(root, dir)) ? readdirSync(join(root, dir)).filter((f) => ext.test(f)).sort().map((f) => join(root, dir, f)) : []);
const csaw = join(root, '..', 'shared', 'csaw', 'lab3_repaired_2pct_full_model.h5');
const models = args.length > 0 ? args : [...fixtures('test/fixtures/onnx', /_op17\.onnx$/), ...fixtures('test/fixtures/keras3', /\.keras$/), ...(existsSync(csaw) ? [csaw] : [])];

await initBackend('wasm');
console.log(`load average at the start: ${loadavg().map((v) => v.toFixed(1)).join(' ')}`);
console.log('| model | input -> classes | auto picks | tfjs-wasm img/s | ort img/s | ort / tfjs | loss tfjs / ort |');
console.log('|:--|:--|:--|--:|--:|--:|:--|');
for (const file of models) {
  const probe = await loadModel(file);
  const shape = probe.inputShape;
  const classes = probe.net.outputs[0]!.shape[1] as number;
  const pick = resolveTrainEngine(probe.net, 'auto');
  probe.net.dispose();
  const n = BATCH * (BATCHES + 1);
  const per = shape[0] * shape[1] * shape[2];
  const images = new Uint8Array(n * per);
  for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 7) % classes);
  const best: Partial<Record<TrainEngineName, { rate: number; loss: number } | string>> = {};
  for (let r = 0; r < REPEAT; r++) {
    for (const engine of ['tfjs', 'ort'] as TrainEngineName[]) {
      if (typeof best[engine] === 'string') continue;
      const m = await loadModel(file);
      let t0 = 0;
      let done = 0;
      try {
        const [s] = await train(m.net, { images, labels, n, shape }, {
          epochs: 1, batchSize: BATCH, scale: 255, seed: 1, learningRate: 1e-4, engine,
          onBatch: (_e, d) => { if (d === BATCH) t0 = performance.now(); done = d; },
        });
        const rate = ((done - BATCH) / (performance.now() - t0)) * 1000;
        const prev = best[engine];
        if (!prev || typeof prev === 'string' || rate > prev.rate) best[engine] = { rate, loss: s!.loss };
      } catch (e) {
        best[engine] = (e as Error).message.split('\n')[0]!.slice(0, 80);
      } finally {
        m.net.dispose();
      }
    }
  }
  const cell = (v: { rate: number } | string | undefined) => (v === undefined ? '-' : typeof v === 'string' ? `fails: ${v}` : v.rate.toFixed(0));
  const t = best.tfjs, o = best.ort;
  const ratio = t && o && typeof t !== 'string' && typeof o !== 'string' ? `${(o.rate / t.rate).toFixed(2)}x` : '-';
  const loss = [t, o].map((v) => (v && typeof v !== 'string' ? v.loss.toFixed(4) : '-')).join(' / ');
  console.log(`| ${file.replace(root, '').replace(join(root, '..'), '..')} | ${shape.join('x')} -> ${classes} | ${pick.engine}${pick.why ? ` (${pick.why})` : ''} | ${cell(t)} | ${cell(o)} | ${ratio} | ${loss} |`);
}
console.log(`load average at the end: ${loadavg().map((v) => v.toFixed(1)).join(' ')}`);
