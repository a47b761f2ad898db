/** ONNX in and out: PyTorch fixtures against onnxruntime's reference outputs, weight round trips, bad files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { zeroChannelsInPlace } from '../src/defense/graph.js';
import { initBackend } from '../src/engine/backend.js';
import { describeModel, loadModel, saveModel } from '../src/io/model.js';
import { readOnnx } from '../src/io/onnx.js';
import { decodeModel, num } from '../src/io/onnx_proto.js';
import { PREPROCESSING_KEY } from '../src/io/preprocess.js';
import { buildArchitecture } from '../src/models/index.js';
import { ROOT, sameWeights, tempDir } from './helpers.js';

const FIX = join(ROOT, 'test/fixtures/onnx');
const N = 16, H = 16, W = 16, C = 3;

function fixtureInputs(): tf.Tensor4D {
  const buf = readFileSync(join(FIX, 'inputs.bin'));
  return tf.tensor4d(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice(), [N, H, W, C]);
}

const fixtures = readdirSync(FIX).filter((f) => f.endsWith('.onnx')).sort();

test('ONNX fixtures from PyTorch: top-1 equals onnxruntime on every image, probabilities within 1e-4', async () => {
  await initBackend('wasm');
  assert.ok(fixtures.length >= 9, `fixtures: ${fixtures.join(', ')}`);
  const x = fixtureInputs();
  for (const f of fixtures) {
    const ref = JSON.parse(readFileSync(join(FIX, f.replace(/\.onnx$/, '.json')), 'utf8')) as { probs: number[][] };
    const m = await readOnnx(join(FIX, f));
    const got = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
    let worst = 0;
    for (let i = 0; i < N; i++) {
      const r = ref.probs[i]!, g = got[i]!;
      assert.equal(g.indexOf(Math.max(...g)), r.indexOf(Math.max(...r)), `${f} image ${i}: top-1`);
      for (let j = 0; j < r.length; j++) worst = Math.max(worst, Math.abs(g[j]! - r[j]!));
    }
    assert.ok(worst <= 1e-4, `${f}: max |p - p_ref| = ${worst}`);
    console.log(f, 'max diff', worst, m.net.layers.map((l) => l.getClassName()).join(' '));
    m.net.dispose();
  }
  x.dispose();
});

// ---------------------------------------------------------------------------------------
// ONNX out

/** Run an ONNX file (or bytes) in onnxruntime-node on NHWC images, feeding the layout the graph wants. */
async function ortPredict(model: string | Uint8Array, x: tf.Tensor4D, layout: 'nhwc' | 'nchw'): Promise<number[][]> {
  const ort = await import('onnxruntime-node');
  const s = typeof model === 'string' ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(model);
  const input = layout === 'nchw' ? tf.tidy(() => tf.transpose(x, [0, 3, 1, 2])) : x;
  const feeds = { [s.inputNames[0]!]: new ort.Tensor('float32', input.dataSync() as Float32Array, input.shape) };
  const out = (await s.run(feeds))[s.outputNames[0]!]!;
  if (input !== x) input.dispose();
  const [n, k] = out.dims as number[];
  const d = out.data as Float32Array;
  await s.release();
  return Array.from({ length: n! }, (_, i) => Array.from(d.subarray(i * k!, (i + 1) * k!)));
}

function assertSamePredictions(got: number[][], ref: number[][], what: string): number {
  assert.equal(got.length, ref.length);
  let worst = 0;
  got.forEach((g, i) => {
    const r = ref[i]!;
    assert.equal(g.indexOf(Math.max(...g)), r.indexOf(Math.max(...r)), `${what}: image ${i} label`);
    g.forEach((v, j) => { worst = Math.max(worst, Math.abs(v - r[j]!)); });
  });
  assert.ok(worst <= 1e-4, `${what}: max |p - p_ort| = ${worst}`);
  return worst;
}

/** Zero conv output channels (kernel + bias) and the matching BN gamma/beta, as the pruning defense does. */
function pruneInPlace(net: tfl.LayersModel, conv: string, bn: string | undefined, channels: number[]): void {
  zeroChannelsInPlace(net, conv, channels);
  if (!bn) return;
  const ws = net.getLayer(bn).getWeights();
  const mask = tf.tensor1d(Array.from({ length: ws[0]!.shape[0]! }, (_, i) => (channels.includes(i) ? 0 : 1)));
  const next = [tf.mul(ws[0]!, mask), tf.mul(ws[1]!, mask), ws[2]!, ws[3]!];
  net.getLayer(bn).setWeights(next);
  tf.dispose([mask, next[0]!, next[1]!]);
}

function randomImages(n: number, h: number, w: number, c: number, seed: number): tf.Tensor4D {
  return tf.randomUniform([n, h, w, c], -1, 1, 'float32', seed) as tf.Tensor4D;
}

test('ONNX from PyTorch written back unchanged keeps every node, initializer and the metadata; pruned weights round-trip', async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    for (const f of ['vgg_op13.onnx', 'mobile_op11.onnx', 'resnet_op17.onnx']) {
      const m = await loadModel(join(FIX, f));
      assert.equal(m.format, 'onnx');
      assert.equal(m.preprocessing?.layout, 'nchw');
      assert.deepEqual(m.inputShape, [16, 16, 3]);
      const same = join(dir, `same-${f}`);
      await saveModel(m, same);
      const orig = decodeModel(readFileSync(join(FIX, f)), f);
      const back = decodeModel(readFileSync(same), same);
      assert.deepEqual(back.graph!.node!.map((n) => [n.name, n.opType, n.input, n.output]), orig.graph!.node!.map((n) => [n.name, n.opType, n.input, n.output]));
      assert.deepEqual(back.graph!.initializer, orig.graph!.initializer, `${f}: unchanged weights keep their initializers`);
      assert.equal(num(back.opsetImport![0]!.version), num(orig.opsetImport![0]!.version));
      if (f === 'vgg_op13.onnx') {
        const meta = back.metadataProps!.find((p) => p.key === PREPROCESSING_KEY)!;
        assert.deepEqual(JSON.parse(meta.value!), { scale: 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], layout: 'nchw' });
        assert.deepEqual(m.preprocessing, { scale: 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], layout: 'nchw' });
      }
      // Prune: the first conv's channels 0 and 2 (kernel, bias) and its BN's gamma/beta.
      const conv = m.net.layers.find((l) => l.getClassName() === 'Conv2D')!;
      const bnLayer = m.net.layers.find((l) => l.getClassName() === 'BatchNormalization');
      pruneInPlace(m.net, conv.name, bnLayer?.name, [0, 2]);
      // A grouped conv (held as a block-diagonal Conv2D) and the Dense after the flatten change too.
      if (f.startsWith('mobile')) pruneInPlace(m.net, 'pw', undefined, [1, 6]);
      const dense = m.net.layers.find((l) => l.getClassName() === 'Dense')!;
      const dw = dense.getWeights();
      const scaled = tf.mul(dw[0]!, 0.5);
      dense.setWeights([scaled, dw[1]!]);
      scaled.dispose();
      const pruned = join(dir, `pruned-${f}`);
      await saveModel(m, pruned);
      const again = await loadModel(pruned);
      assert.ok(sameWeights(again.net, m.net), `${f}: pruned weights read back bit for bit`);
      const changed = decodeModel(readFileSync(pruned), pruned).graph!.initializer!.filter((t, i) => JSON.stringify(t) !== JSON.stringify(orig.graph!.initializer![i]));
      assert.ok(changed.length >= 3 && changed.length <= (f.startsWith('mobile') ? 7 : 5), `${f}: changed initializers ${changed.map((t) => t.name).join(', ')}`);
      // onnxruntime runs the written graph as goodnet runs the pruned model.
      const x = randomImages(300, 16, 16, 3, 7);
      const ours = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
      assertSamePredictions(await ortPredict(pruned, x, 'nchw'), ours, `${f} pruned in onnxruntime-node`);
      x.dispose();
      m.net.dispose();
      again.net.dispose();
    }
  } finally {
    cleanup();
  }
});

test('A model not from ONNX (DeepID, and a BN/depthwise/global-pool net) exports to ONNX that onnxruntime-node runs like goodnet', async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const deep = buildArchitecture('deepid', { inputShape: [55, 47, 3], numClasses: 10 });
    const inp = tfl.input({ shape: [12, 10, 3] });
    let y = tfl.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', name: 'c1' }).apply(inp) as tfl.SymbolicTensor;
    y = tfl.layers.batchNormalization({ name: 'bn1' }).apply(y) as tfl.SymbolicTensor;
    y = tfl.layers.reLU({ maxValue: 6 }).apply(y) as tfl.SymbolicTensor;
    const z = tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, name: 'dw' }).apply(y) as tfl.SymbolicTensor;
    const z2 = tfl.layers.conv2d({ filters: 12, kernelSize: 1, activation: 'relu', name: 'pw' }).apply(y) as tfl.SymbolicTensor;
    y = tfl.layers.add().apply([z, z2]) as tfl.SymbolicTensor;
    y = tfl.layers.averagePooling2d({ poolSize: 2, padding: 'same' }).apply(y) as tfl.SymbolicTensor;
    const g = tfl.layers.globalAveragePooling2d({}).apply(y) as tfl.SymbolicTensor;
    const f = tfl.layers.flatten().apply(y) as tfl.SymbolicTensor;
    const cat = tfl.layers.concatenate().apply([g, f]) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 4, activation: 'softmax' }).apply(cat) as tfl.SymbolicTensor;
    const small = tfl.model({ inputs: inp, outputs: out });
    // Non-trivial BN statistics.
    small.getLayer('bn1').setWeights([tf.randomUniform([6], 0.5, 1.5, 'float32', 1), tf.randomUniform([6], -0.2, 0.2, 'float32', 2), tf.randomUniform([6], -0.2, 0.2, 'float32', 3), tf.randomUniform([6], 0.5, 1.5, 'float32', 4)]);
    for (const [net, shape] of [[deep, [55, 47, 3]], [small, [12, 10, 3]]] as const) {
      const path = join(dir, `${net.name}.onnx`);
      await saveModel({ ...describeModel(net, 'mem', 'tfjs'), preprocessing: { scale: 255 } }, path);
      const meta = decodeModel(readFileSync(path), path).metadataProps!;
      assert.equal(meta.find((p) => p.key === 'goodnet.input_layout')?.value, 'nhwc');
      assert.deepEqual(JSON.parse(meta.find((p) => p.key === PREPROCESSING_KEY)!.value!), { scale: 255, layout: 'nhwc' });
      const x = randomImages(300, shape[0], shape[1], shape[2], 11);
      const ours = tf.tidy(() => net.predict(x) as tf.Tensor2D).arraySync();
      const worst = assertSamePredictions(await ortPredict(path, x, 'nhwc'), ours, `${net.name} in onnxruntime-node`);
      console.log(`${net.name}: 300 images, max |p - p_ort| = ${worst}`);
      // And goodnet reads its own export back (NHWC input recognized).
      const back = await loadModel(path);
      assert.equal(back.preprocessing?.layout, 'nhwc');
      assert.deepEqual(back.inputShape, shape);
      const again = tf.tidy(() => back.net.predict(x) as tf.Tensor2D).arraySync();
      assertSamePredictions(again, ours, `${net.name} read back`);
      x.dispose();
      back.net.dispose();
    }
    deep.dispose();
    small.dispose();
  } finally {
    cleanup();
  }
});
