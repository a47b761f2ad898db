/** The onnxruntime-node forward engine (--engine ort) against the tfjs path: same labels, same probabilities. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { OrtEngine, nhwcToNchw } from '../src/engine/ort.js';
import { checkOrtExport, forwardEngineFor, onnxSourceCoversNet, ortEngineFor, setAutoEngineUsesOrt } from '../src/eval/ort_model.js';
import { predictDataset, topkRows } from '../src/eval/predict.js';
import { evaluate } from '../src/eval/evaluate.js';
import { describeModel, loadModel, saveModel, type LoadedModel } from '../src/io/model.js';
import type { ImageDataset } from '../src/io/dataset.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { buildArchitecture } from '../src/models/index.js';
import { calibrateStrip, stripEntropies } from '../src/detect/strip.js';
import { GoodnetError } from '../src/errors.js';
import { findCutPoint, MASK_SUFFIX } from '../src/defense/graph.js';
import { maskedCopy } from '../src/defense/mask.js';
import { decodeModel, encodeModel } from '../src/io/onnx_proto.js';
import { onnxBytes } from '../src/io/onnx_write.js';
import { ROOT, assertBadInput, tempDir } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-ort-');
after(cleanup);
const BIN = join(ROOT, 'bin', 'goodnet.js');

/** Seeded uniform values in [lo, hi). */
function seeded(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = lo + ((s >>> 8) / (1 << 24)) * (hi - lo);
  }
  return x;
}

/** An in-memory data set of NHWC images. */
function memoryDataset(x: Float32Array, shape: [number, number, number], labels?: Int32Array): ImageDataset {
  const per = shape[0] * shape[1] * shape[2];
  const n = x.length / per;
  return {
    source: 'memory', length: n, imageShape: shape, labels: labels ?? new Int32Array(n).fill(-1),
    name: (i) => `#${i}`,
    async *batches(b: number) {
      for (let s = 0; s < n; s += b) {
        const m = Math.min(b, n - s);
        yield { x: x.subarray(s * per, (s + m) * per), y: new Int32Array(m).fill(-1), n: m, start: s };
      }
    },
    close() {},
  };
}

/** tfjs probabilities of every image. */
function tfjsProbs(net: tfl.LayersModel, x: Float32Array, shape: [number, number, number]): Float32Array {
  const n = x.length / (shape[0] * shape[1] * shape[2]);
  return tf.tidy(() => (net.predict(tf.tensor4d(x, [n, ...shape])) as tf.Tensor).dataSync() as Float32Array);
}

/** Compare engines on `n` random images: engine scores within 1e-5, predictDataset labels identical, top-3 identical. */
async function compareEngines(model: LoadedModel, n: number, seed: number): Promise<number> {
  const shape = model.inputShape;
  const x = seeded(n * shape[0] * shape[1] * shape[2], seed);
  const ref = tfjsProbs(model.net, x, shape);
  const eng = await ortEngineFor(model);
  let worst = 0;
  try {
    // Two uneven batches: the engine takes any n.
    const a = Math.floor(n / 3);
    const s1 = await eng.predictBatch(x.subarray(0, a * shape[0] * shape[1] * shape[2]), a);
    const s2 = await eng.predictBatch(x.subarray(a * shape[0] * shape[1] * shape[2]), n - a);
    assert.equal(s1.classes, model.numClasses);
    const got = new Float32Array(n * model.numClasses);
    got.set(s1.scores);
    got.set(s2.scores, s1.scores.length);
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!));
  } finally {
    await eng.dispose();
  }
  assert.ok(worst <= 1e-5, `${model.source}: max |p_ort - p_tfjs| = ${worst}`);
  const ds = memoryDataset(x, shape);
  const pt = await predictDataset(model, ds, { topK: 3, batchSize: 64, engine: 'tfjs' });
  const po = await predictDataset(model, ds, { topK: 3, batchSize: 64, engine: 'ort' });
  const pa = await predictDataset(model, ds, { topK: 3, batchSize: 64 }); // the default, 'auto'
  assert.equal(pt.engine, 'tfjs');
  assert.equal(po.engine, 'ort');
  assert.equal(pa.engine, 'ort', `${model.source}: the default engine is ort for a model with an ONNX form`);
  assert.deepEqual(Array.from(pa.labels), Array.from(po.labels));
  assert.deepEqual(Array.from(po.labels), Array.from(pt.labels), `${model.source}: labels`);
  assert.deepEqual(Array.from(po.topkLabels!), Array.from(pt.topkLabels!), `${model.source}: top-3 labels`);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(po.top[i]! - pt.top[i]!) <= 1e-5, `${model.source}: image ${i} top probability`);
  // The outputs differ between images: the comparison means something.
  let spread = 0;
  for (let i = 1; i < n; i++) spread = Math.max(spread, Math.abs(pt.top[i]! - pt.top[0]!));
  assert.ok(spread > 1e-3, `${model.source}: outputs vary (${spread})`);
  return worst;
}

function residualNet(): tfl.LayersModel {
  const inp = tfl.input({ shape: [12, 10, 3] });
  let y = tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', name: 'c1', kernelInitializer: tfl.initializers.glorotNormal({ seed: 1 }) }).apply(inp) as tfl.SymbolicTensor;
  y = tfl.layers.batchNormalization({ name: 'bn1' }).apply(y) as tfl.SymbolicTensor;
  y = tfl.layers.activation({ activation: 'relu' }).apply(y) as tfl.SymbolicTensor;
  let z = tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', name: 'c2', kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }).apply(y) as tfl.SymbolicTensor;
  z = tfl.layers.batchNormalization({ name: 'bn2' }).apply(z) as tfl.SymbolicTensor;
  y = tfl.layers.add().apply([y, z]) as tfl.SymbolicTensor;
  y = tfl.layers.activation({ activation: 'relu' }).apply(y) as tfl.SymbolicTensor;
  y = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(y) as tfl.SymbolicTensor;
  y = tfl.layers.flatten().apply(y) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 5, activation: 'softmax', name: 'out', kernelInitializer: tfl.initializers.glorotNormal({ seed: 3 }) }).apply(y) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: inp, outputs: out, name: 'resid' });
  for (const [name, s] of [['bn1', 10], ['bn2', 20]] as const) {
    net.getLayer(name).setWeights([tf.randomUniform([6], 0.5, 1.5, 'float32', s), tf.randomUniform([6], -0.3, 0.3, 'float32', s + 1),
      tf.randomUniform([6], -0.3, 0.3, 'float32', s + 2), tf.randomUniform([6], 0.5, 1.5, 'float32', s + 3)]);
  }
  return net;
}

test('ort engine = tfjs on a DeepID-shaped model, a BN/residual model and a PyTorch NCHW ONNX fixture (300 images, p within 1e-5)', async () => {
  const deep = buildArchitecture('deepid', { inputShape: [31, 27, 3], numClasses: 7 });
  const w1 = await compareEngines({ ...describeModel(deep, 'deepid', 'tfjs') }, 300, 1);
  const w2 = await compareEngines(describeModel(residualNet(), 'resid', 'tfjs'), 300, 2);
  const fix = await loadModel(join(ROOT, 'test/fixtures/onnx/resnet_op17.onnx'));
  assert.equal(fix.onnx?.inputLayout, 'nchw');
  const w3 = await compareEngines(fix, 300, 3);
  console.log(`max |p_ort - p_tfjs|: deepid ${w1}, resid ${w2}, resnet_op17.onnx ${w3}`);
});

test('nhwcToNchw and topkRows', () => {
  const x = Float32Array.from({ length: 2 * 2 * 3 * 2 }, (_, i) => i); // n=2, h=2, w=3, c=2
  const y = nhwcToNchw(x, 2, 2, 3, 2);
  // image 1, channel 1, pixel (1, 2): NHWC index 12 + (1*3+2)*2 + 1 = 23
  assert.equal(y[12 + 1 * 6 + 1 * 3 + 2], 23);
  assert.equal(y[0], 0);
  assert.equal(y[1], 2);
  const { idx, val } = topkRows(Float32Array.of(0.1, 0.5, 0.5, 0.2, 0.9, 0, 0, 0.3), 2, 4, 2);
  assert.deepEqual(Array.from(idx), [1, 2, 0, 3]);
  assert.deepEqual(Array.from(val), [0.5, 0.5, 0.8999999761581421, 0.30000001192092896]);
});

test('a model with no ONNX form fails before work with a one-line error suggesting --engine tfjs', async () => {
  const inp = tfl.input({ shape: [4, 4, 1] });
  const y = tfl.layers.conv2d({ filters: 2, kernelSize: 2, dataFormat: 'channelsFirst' }).apply(inp) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 2, activation: 'softmax' }).apply(tfl.layers.flatten().apply(y) as tfl.SymbolicTensor) as tfl.SymbolicTensor;
  const model = describeModel(tfl.model({ inputs: inp, outputs: out }), 'odd.h5', 'tfjs');
  let progressed = false;
  await assert.rejects(
    predictDataset(model, memoryDataset(new Float32Array(16 * 3), [4, 4, 1]), { engine: 'ort', onProgress: () => { progressed = true; } }),
    (e: unknown) => e instanceof GoodnetError && /^odd\.h5: cannot run on --engine ort: .*use --engine tfjs$/.test(e.message) && !e.message.includes('\n'),
  );
  assert.equal(progressed, false);
  // The default engine ('auto') runs a model without an ONNX form (here: UpSampling2D) on tfjs instead.
  const up = tfl.layers.upSampling2d({ size: [2, 2] }).apply(inp) as tfl.SymbolicTensor;
  const out2 = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(tfl.layers.flatten().apply(up) as tfl.SymbolicTensor) as tfl.SymbolicTensor;
  const upModel = describeModel(tfl.model({ inputs: inp, outputs: out2 }), 'up.h5', 'tfjs');
  assert.throws(() => checkOrtExport(upModel), /up\.h5: cannot run on --engine ort/);
  const auto = await predictDataset(upModel, memoryDataset(seeded(16 * 5, 4), [4, 4, 1]));
  assert.equal(auto.engine, 'tfjs');
  assert.equal(auto.labels.length, 5);
  await assert.rejects(OrtEngine.create(Uint8Array.of(1, 2, 3), { layout: 'nhwc', inputShape: [1, 1, 1], source: 'x.onnx' }), /x\.onnx: onnxruntime cannot run .*--engine tfjs/);
});

test('goodnet eval --engine ort prints the same accuracy and ASR as the default engine', async () => {
  const H = 10, W = 8, C = 3, n = 120;
  const net = buildArchitecture('deepid', { inputShape: [H, W, C], numClasses: 4 });
  const path = join(dir, 'm.h5');
  await saveModel({ ...describeModel(net, 'm', 'tfjs'), preprocessing: { scale: 255 } }, path);
  const raw = Uint8Array.from(seeded(n * H * W * C, 9, 0, 256), (v) => Math.floor(v));
  const probs = tfjsProbs(net, Float32Array.from(raw, (v) => v / 255), [H, W, C]);
  // Labels: the model's answer on 2/3 of the images, another class on the rest.
  const labels = Array.from({ length: n }, (_, i) => {
    const row = probs.subarray(i * 4, i * 4 + 4);
    const best = row.indexOf(Math.max(...row));
    return i % 3 === 0 ? (best + 1) % 4 : best;
  });
  await writeCsawData(join(dir, 'c.h5'), raw, labels, n, H, W, C);
  const run = (...extra: string[]) => spawnSync(process.execPath, [BIN, 'eval', '-m', path, '-c', join(dir, 'c.h5'), '-p', join(dir, 'c.h5'), '-t', '1', '--json', '-', ...extra], { encoding: 'utf8', timeout: 120_000 });
  const a = run(), b = run('--engine', 'ort');
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  const ja = JSON.parse(a.stdout), jb = JSON.parse(b.stdout);
  assert.equal(jb.engine, 'ort');
  assert.deepEqual(jb.clean, ja.clean);
  assert.deepEqual(jb.poisoned, ja.poisoned);
  assert.ok(ja.clean.accuracy > 0.5 && ja.clean.accuracy < 0.8, `accuracy ${ja.clean.accuracy}`);
  // Bad flag values are usage errors.
  const bad = run('--engine', 'torch');
  assertBadInput({ code: bad.status, err: bad.stderr }, /engine/);

  // STRIP's forward passes (a separate loop) on the ort engine: same labels, same entropies up to float rounding.
  const model = await loadModel(path);
  const det = await calibrateStrip(model, join(dir, 'c.h5'), { n: 8, frr: 0.05, seed: 0 });
  const st = await stripEntropies(model, det, join(dir, 'c.h5'), { stream: 's' });
  const so = await stripEntropies(model, det, join(dir, 'c.h5'), { stream: 's', engine: 'ort' });
  assert.deepEqual(Array.from(so.predicted), Array.from(st.predicted));
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(so.entropies[i]! - st.entropies[i]!));
  assert.ok(worst <= 1e-4, `STRIP entropies: max diff ${worst} bits`);
  assert.ok(Math.max(...st.entropies) - Math.min(...st.entropies) > 1e-3, 'entropies vary');
});

test('a graph with a fixed batch size runs in chunks (last one padded); a graph whose input does not fit the images is refused', async () => {
  const net = residualNet();
  const m = decodeModel(onnxBytes(net), 'fixed.onnx');
  m.graph!.input![0]!.type!.tensorType!.shape!.dim![0] = { dimValue: 4 };
  const bytes = encodeModel(m);
  const eng = await OrtEngine.create(bytes, { layout: 'nhwc', inputShape: [12, 10, 3], source: 'fixed.onnx' });
  try {
    assert.equal(eng.fixedBatch, 4);
    const x = seeded(10 * 12 * 10 * 3, 5);
    const r = await eng.predictBatch(x, 10);
    const ref = tfjsProbs(net, x, [12, 10, 3]);
    assert.equal(r.scores.length, ref.length);
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(r.scores[i]! - ref[i]!));
    assert.ok(worst <= 1e-5, `max diff ${worst}`);
  } finally {
    await eng.dispose();
  }
  await assert.rejects(OrtEngine.create(bytes, { layout: 'nhwc', inputShape: [10, 12, 3], source: 'fixed.onnx' }),
    /^GoodnetError: fixed\.onnx: the ONNX graph's input is \(4,12,10,3\), not NHWC images of 10x12x3; use --engine tfjs$/);
});

test('a net changed after loading an ONNX graph (an added layer, e.g. a pruning mask) runs as a clean NHWC export, not the stale graph', async () => {
  const fix = await loadModel(join(ROOT, 'test/fixtures/onnx/resnet_op17.onnx'));
  assert.ok(onnxSourceCoversNet(fix.onnx!, fix.net));
  // A pruning mask layer (prune's 'mask' realisation) the original graph does not have.
  const [H, W, C] = fix.inputShape;
  const cut = findCutPoint(fix.net);
  const changed = await maskedCopy(fix.net, { ...cut, realise: { kind: 'mask', layer: `${cut.conv}${MASK_SUFFIX}` } }, [0, 1, 2, 3, 4, 5]);
  assert.ok(changed.layers.length === fix.net.layers.length + 1);
  assert.equal(onnxSourceCoversNet(fix.onnx!, changed), false);
  const model: LoadedModel = { ...fix, net: changed };
  const n = 40;
  const x = seeded(n * H * W * C, 11);
  const ref = tfjsProbs(changed, x, [H, W, C]);
  const stale = tfjsProbs(fix.net, x, [H, W, C]);
  const eng = (await forwardEngineFor(model))!;
  assert.ok(eng !== undefined);
  try {
    assert.equal(eng.layout, 'nhwc');
    const r = await eng.predictBatch(x, n);
    let worst = 0, moved = 0;
    for (let i = 0; i < ref.length; i++) {
      worst = Math.max(worst, Math.abs(r.scores[i]! - ref[i]!));
      moved = Math.max(moved, Math.abs(stale[i]! - ref[i]!));
    }
    assert.ok(worst <= 1e-5, `max diff ${worst}`);
    assert.ok(moved > 1e-3, `the extra layer changes the outputs (${moved})`);
  } finally {
    await eng.dispose();
  }
  assert.equal(await forwardEngineFor(model, 'tfjs'), undefined);
});

test('ort engine: class scores are bit-identical with 1 and 2 intra-op threads (so the default, the core count, changes no number)', async () => {
  const model = describeModel(buildArchitecture('vgg', { inputShape: [28, 28, 1], numClasses: 10, seed: 4 }), 'vgg', 'tfjs');
  const n = 200;
  const x = seeded(n * 28 * 28, 7, 0, 1);
  const e1 = await ortEngineFor(model, { threads: 1 });
  const e2 = await ortEngineFor(model, { threads: 2 });
  const e0 = await ortEngineFor(model);
  try {
    assert.equal(e1.threads, 1);
    assert.equal(e2.threads, 2);
    assert.ok(e0.threads >= 1, 'the default resolves to the core count');
    const a = await e1.predictBatch(x, n), b = await e2.predictBatch(x, n), c = await e0.predictBatch(x, n);
    assert.equal(a.scores.length, n * 10);
    assert.deepEqual(b.scores, a.scores);
    assert.deepEqual(c.scores, a.scores);
  } finally {
    await Promise.all([e1.dispose(), e2.dispose(), e0.dispose()]);
  }
});

test("setAutoEngineUsesOrt(false) (the browser page's worker): 'auto' runs tfjs, 'ort' still runs ort", async () => {
  const model = describeModel(buildArchitecture('deepid', { inputShape: [16, 16, 1], numClasses: 4, seed: 2 }), 'deepid', 'tfjs');
  const ds = memoryDataset(seeded(20 * 256, 9, 0, 1), [16, 16, 1]);
  setAutoEngineUsesOrt(false);
  try {
    assert.equal(await forwardEngineFor(model, 'auto'), undefined);
    assert.equal((await predictDataset(model, ds, { batchSize: 8 })).engine, 'tfjs');
    assert.equal((await predictDataset(model, ds, { batchSize: 8, engine: 'ort' })).engine, 'ort');
  } finally {
    setAutoEngineUsesOrt(true);
  }
  assert.equal((await predictDataset(model, ds, { batchSize: 8 })).engine, 'ort');
});
