/** ONNX in and out: PyTorch fixtures against onnxruntime's reference outputs, weight round trips, bad files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { findCutPoint } from '../src/defense/graph.js';
import { pruneChannels } from '../src/defense/mask.js';
import { initBackend } from '../src/engine/backend.js';
import { describeModel, loadModel, saveModel, type LoadedModel } from '../src/io/model.js';
import { readOnnx } from '../src/io/onnx.js';
import { AT, decodeModel, encodeModel, floatTensor, int64Tensor, num, tensorValue, type AttributeProto, type ModelProto, type TensorProto } from '../src/io/onnx_proto.js';
import { GoodnetError } from '../src/errors.js';
import { PREPROCESSING_KEY } from '../src/io/preprocess.js';
import { buildArchitecture } from '../src/models/index.js';
import { CSAW, ROOT, assertBadInput, needsCsaw, sameWeights, tempDir } from './helpers.js';
import { openDataset } from '../src/io/dataset.js';

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

/** Zero output channels of a conv layer in place (kernel slice and bias). */
function zeroChannelsInPlace(net: tfl.LayersModel, conv: string, channels: number[]): void {
  const layer = net.getLayer(conv);
  const ws = layer.getWeights();
  const mask = tf.tensor1d(Array.from({ length: ws[0]!.shape.at(-1)! }, (_, i) => (channels.includes(i) ? 0 : 1)));
  const next = ws.map((w) => tf.mul(w, mask));
  layer.setWeights(next);
  tf.dispose([mask, ...next]);
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
      if (f.startsWith('mobile')) {
        // The registered ONNX layer classes survive a tfjs folder round trip.
        await saveModel(m, join(dir, 'mobile-tfjs'));
        const tfjs = await loadModel(join(dir, 'mobile-tfjs'));
        assert.ok(tfjs.net.layers.some((l) => l.getClassName() === 'OnnxConstArith'));
        assertSamePredictions(tf.tidy(() => tfjs.net.predict(x) as tf.Tensor2D).arraySync(), ours, 'mobile via tfjs');
        tfjs.net.dispose();
      }
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

// ---------------------------------------------------------------------------------------
// Bad files: one line naming the file (and the node)

/** A tiny valid NCHW graph: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, editable per case. */
function tinyOnnx(edit: (m: ModelProto) => void = () => {}): Uint8Array {
  const m: ModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'tiny',
      node: [
        { opType: 'Conv', name: 'conv', input: ['x', 'w'], output: ['c'], attribute: [{ name: 'pads', type: AT.INTS, ints: [1, 1, 1, 1] }] },
        { opType: 'Relu', name: 'relu', input: ['c'], output: ['r'] },
        { opType: 'GlobalAveragePool', name: 'gap', input: ['r'], output: ['g'] },
        { opType: 'Flatten', name: 'flat', input: ['g'], output: ['f'] },
        { opType: 'Gemm', name: 'fc', input: ['f', 'fw'], output: ['y'], attribute: [{ name: 'transB', type: AT.INT, i: 1 }] },
      ],
      initializer: [floatTensor('w', [2, 1, 3, 3], new Float32Array(18).fill(0.1)), floatTensor('fw', [3, 2], Float32Array.of(1, 0, 0, 1, 1, 1))],
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'N' }, { dimValue: 1 }, { dimValue: 6 }, { dimValue: 6 }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'N' }, { dimValue: 3 }] } } } }],
    },
  };
  edit(m);
  return encodeModel(m);
}

test('bad ONNX files end in one GoodnetError naming the file (and the node)', async () => {
  await initBackend('cpu');
  const { dir, cleanup } = tempDir();
  try {
    const good = join(dir, 'good.onnx');
    writeFileSync(good, tinyOnnx());
    const m = await loadModel(good);
    assert.deepEqual(m.inputShape, [6, 6, 1]);
    assert.equal(m.numClasses, 3);
    m.net.dispose();
    // The same weights in the typed fields (float_data, int64_data) instead of raw_data.
    const typed = join(dir, 'typed.onnx');
    writeFileSync(typed, tinyOnnx((x) => {
      const g = x.graph!;
      g.initializer = g.initializer!.map((t) => ({ name: t.name, dims: t.dims, dataType: 1, floatData: Array.from(tensorValue(t, 'x', 'x').data) }));
      g.node![3] = { opType: 'Reshape', name: 'rs', input: ['g', 'shape'], output: ['f'] };
      g.initializer.push({ name: 'shape', dims: [2], dataType: 7, int64Data: [0, -1] });
    }));
    const t1 = await loadModel(typed), t0 = await loadModel(good);
    assert.ok(sameWeights(t1.net, t0.net), 'typed fields read like raw_data');
    t1.net.dispose();
    t0.net.dispose();
    const fixture = readFileSync(join(FIX, 'vgg_op13.onnx'));
    const cases: [string, Uint8Array, RegExp][] = [
      ['truncated.onnx', fixture.subarray(0, 9000), /not a readable ONNX model|has \d+ values/],
      ['junk.onnx', Buffer.concat([Buffer.from([0x08, 0x07]), Buffer.alloc(64, 0xff)]), /not a readable ONNX model|not an ONNX model/],
      ['text.onnx', Buffer.from('hello, not a model\n'), /not a model file/],
      ['op.onnx', tinyOnnx((x) => { x.graph!.node![1]!.opType = 'Resize'; }), /node 'relu' \(Resize\): operator is not supported/],
      ['two-outputs.onnx', tinyOnnx((x) => { x.graph!.output!.push({ name: 'r' }); }), /2 outputs/],
      ['external.onnx', tinyOnnx((x) => { x.graph!.initializer![0] = { name: 'w', dims: [2, 1, 3, 3], dataType: 1, dataLocation: 1, externalData: [{ key: 'location', value: 'w.bin' }] }; }), /initializer 'w' keeps its data in an external file/],
      ['training.onnx', tinyOnnx((x) => { x.trainingInfo = [{}]; }), /training graph/],
      ['dynamic.onnx', tinyOnnx((x) => { x.graph!.input![0]!.type!.tensorType!.shape!.dim![2] = { dimParam: 'H' }; }), /dynamic or invalid image dimensions/],
      ['opset.onnx', tinyOnnx((x) => { x.opsetImport![0]!.version = 8; }), /opset 8 is not supported/],
      ['shape.onnx', tinyOnnx((x) => { x.graph!.initializer![1]!.dims = [4, 2]; }), /initializer 'fw' has 6 values/],
      ['nan.onnx', tinyOnnx((x) => { x.graph!.initializer![0] = floatTensor('w', [2, 1, 3, 3], new Float32Array(18).fill(NaN)); }), /node 'conv' \(Conv\): weight 0 of layer 'w' contains NaN/],
      ['reshape.onnx', tinyOnnx((x) => {
        x.graph!.node![3] = { opType: 'Reshape', name: 'rs', input: ['g', 'shape'], output: ['f'] };
        x.graph!.initializer!.push(int64Tensor('shape', [3], [-1, 2, 1]));
      }), /node 'rs' \(Reshape\): reshaping \(N,2,1,1\) to \(-1,2,1\) is not supported/],
    ];
    for (const [name, bytes, re] of cases) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      await assert.rejects(loadModel(path), (err: Error) => {
        assert.ok(err instanceof GoodnetError, `${name}: ${err.stack}`);
        assert.ok(err.message.startsWith(`${path}: `), `${name}: names the file: ${err.message}`);
        assert.doesNotMatch(err.message, /\n/);
        assert.match(err.message, re, name);
        return true;
      });
    }
    // The CLI: `goodnet inspect` reads ONNX; a bad one is one line and exit 2.
    const bin = join(ROOT, 'bin', 'goodnet.js');
    const ok = spawnSync(process.execPath, [bin, 'inspect', '-m', join(FIX, 'resnet_op13.onnx')], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /conv3/);
    const bad = spawnSync(process.execPath, [bin, 'inspect', '-m', join(dir, 'op.onnx')], { encoding: 'utf8', timeout: 60_000 });
    assertBadInput({ code: bad.status, err: bad.stderr }, /op\.onnx: node 'relu' \(Resize\): operator is not supported/);
  } finally {
    cleanup();
  }
});

// ---------------------------------------------------------------------------------------
// Python onnxruntime (skips without it)

const PY = spawnSync('python3', ['-c', 'import onnx, onnxruntime'], { encoding: 'utf8' });
const needsPython = PY.status === 0 ? {} : { skip: 'python3 with onnx and onnxruntime not found: Python onnxruntime check skipped' };

test('goodnet-written ONNX passes onnx.checker and runs in Python onnxruntime like goodnet', needsPython, async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const m = await loadModel(join(FIX, 'mobile_op17.onnx'));
    pruneInPlace(m.net, 'conv3', undefined, [1, 2, 5]);
    const nets: [string, LoadedModel, 'nchw' | 'nhwc'][] = [
      ['pruned.onnx', m, 'nchw'],
      ['exported.onnx', { ...m, onnx: undefined }, 'nhwc'], // the same network as a clean goodnet graph
    ];
    const x = fixtureInputs();
    const xs = join(dir, 'x.bin');
    writeFileSync(xs, Buffer.from((x.dataSync() as Float32Array).buffer));
    for (const [name, model, layout] of nets) {
      const path = join(dir, name);
      await saveModel(model, path);
      const script = [
        'import sys, json, numpy as np, onnx, onnxruntime as ort',
        'onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)',
        `x = np.fromfile(sys.argv[2], dtype="<f4").reshape(${N}, ${H}, ${W}, ${C})`,
        'x = x.transpose(0, 3, 1, 2).copy() if sys.argv[3] == "nchw" else x',
        's = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])',
        'print(json.dumps(s.run(None, {s.get_inputs()[0].name: x})[0].tolist()))',
      ].join('\n');
      const r = spawnSync('python3', ['-c', script, path, xs, layout], { encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, r.stderr);
      const ours = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
      assertSamePredictions(JSON.parse(r.stdout) as number[][], ours, `${name} in Python onnxruntime`);
    }
    x.dispose();
    m.net.dispose();
  } finally {
    cleanup();
  }
});

test('Pruning an ONNX conv -> relu -> pool model: the cut point is found, the repaired ONNX runs in onnxruntime-node with the channels zeroed', async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'cnn.onnx');
    // Conv(4 ch) -> Relu -> MaxPool 2x2 -> Flatten -> Gemm(3): the Relu folds into the Conv2D, as Keras builds it.
    const w = Float32Array.from({ length: 4 * 1 * 3 * 3 }, (_, i) => Math.sin(i + 1));
    const fw = Float32Array.from({ length: 3 * 144 }, (_, i) => Math.cos(i));
    writeFileSync(path, tinyOnnx((m) => {
      const g = m.graph!;
      g.initializer = [floatTensor('conv.weight', [4, 1, 3, 3], w), floatTensor('conv.bias', [4], Float32Array.of(0.1, -0.1, 0.2, 0)), floatTensor('fc.weight', [3, 144], fw)];
      g.node![0]!.input = ['x', 'conv.weight', 'conv.bias'];
      g.node![2] = { opType: 'MaxPool', name: 'pool', input: ['r'], output: ['g'], attribute: [{ name: 'kernel_shape', type: AT.INTS, ints: [2, 2] }, { name: 'strides', type: AT.INTS, ints: [2, 2] }] };
      g.node![4]!.input = ['f', 'fc.weight'];
      g.node!.push({ opType: 'Softmax', name: 'softmax', input: ['y'], output: ['probs'], attribute: [{ name: 'axis', type: AT.INT, i: 1 }] });
      g.output![0]!.name = 'probs';
      g.input![0]!.type!.tensorType!.shape!.dim = [{ dimParam: 'N' }, { dimValue: 1 }, { dimValue: 12 }, { dimValue: 12 }];
    }));
    const m = await loadModel(path);
    const cut = findCutPoint(m.net, undefined, path);
    assert.deepEqual({ pool: cut.pool, conv: cut.conv, channels: cut.channels, realise: cut.realise.kind }, { pool: 'pool', conv: 'conv', channels: 4, realise: 'zero' });
    const net = await pruneChannels(m.net, cut.conv, [1, 3]);
    const out = join(dir, 'repaired.onnx');
    await saveModel({ ...m, net }, out);
    const stored = decodeModel(readFileSync(out), out).graph!.initializer!;
    const kernel = tensorValue(stored.find((t) => t.name === 'conv.weight')!, out, 'w').data;
    assert.ok(kernel.subarray(9, 18).every((v) => v === 0) && kernel.subarray(27, 36).every((v) => v === 0), 'channels 1 and 3 zeroed in OIHW');
    assert.ok(kernel.subarray(0, 9).every((v, i) => v === w[i]), 'channel 0 untouched');
    assert.deepEqual(stored.find((t) => t.name === 'fc.weight'), decodeModel(readFileSync(path), path).graph!.initializer![2], 'the Gemm weights are unchanged');
    const x = randomImages(200, 12, 12, 1, 3);
    const ours = tf.tidy(() => net.predict(x) as tf.Tensor2D).arraySync();
    assertSamePredictions(await ortPredict(out, x, 'nchw'), ours, 'repaired.onnx in onnxruntime-node');
    x.dispose();
    net.dispose();
    m.net.dispose();
  } finally {
    cleanup();
  }
});

test('The real CSAW repaired DeepID exported to ONNX: onnxruntime-node labels the 10 real faces (and 290 more images) as goodnet does', needsCsaw, async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const file = 'lab3_repaired_2pct_full_model.h5';
    const model = await loadModel(join(CSAW, file));
    const path = join(dir, 'repaired.onnx');
    await saveModel(model, path);
    const ds = await openDataset(join(CSAW, 'images'));
    const real: Float32Array[] = [];
    try {
      for await (const b of ds.batches(64)) real.push(b.x);
    } finally {
      ds.close();
    }
    const pixels = Float32Array.from(real.flatMap((a) => Array.from(a)));
    const [H, W2, C2] = model.inputShape;
    const n = pixels.length / (H * W2 * C2);
    assert.equal(n, 10);
    const x = tf.tidy(() => tf.concat([tf.tensor4d(pixels, [n, H, W2, C2]), tf.randomUniform([290, H, W2, C2], 0, 255, 'float32', 5)]) as tf.Tensor4D);
    const ours = tf.tidy(() => model.net.predict(x) as tf.Tensor2D).arraySync();
    const worst = assertSamePredictions(await ortPredict(path, x, 'nhwc'), ours, `${file} in onnxruntime-node`);
    console.log(`${file}: 300 images (10 real), max |p - p_ort| = ${worst}`);
    x.dispose();
    model.net.dispose();
  } finally {
    cleanup();
  }
});

// ---------------------------------------------------------------------------------------
// Operators torch does not emit in the fixtures, against onnxruntime-node on crafted graphs

type N = [op: string, inputs: string[], outputs: string[], attrs?: Record<string, number | number[] | string>];

function graphOnnx(opset: number, inDims: number[], nodes: N[], inits: TensorProto[], out: string): Uint8Array {
  const attr = (name: string, v: number | number[] | string): AttributeProto =>
    typeof v === 'string' ? { name, type: AT.STRING, s: Buffer.from(v) }
      : Array.isArray(v) ? { name, type: AT.INTS, ints: v }
        : Number.isInteger(v) && !['alpha', 'beta', 'epsilon', 'ratio', 'min', 'max'].includes(name) ? { name, type: AT.INT, i: v } : { name, type: AT.FLOAT, f: v };
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: 'g',
      node: nodes.map(([op, input, output, attrs], i) => ({ opType: op, name: `${op.toLowerCase()}_${i}`, input, output, attribute: Object.entries(attrs ?? {}).map(([k, v]) => attr(k, v)) })),
      initializer: inits,
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'N' }, ...inDims.map((d) => ({ dimValue: d }))] } } } }],
      output: [{ name: out, type: { tensorType: { elemType: 1 } } }],
    },
  });
}

const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) * 0.5);

test('Crafted ONNX graphs (MatMul+Add, Gemm alpha/beta, auto_pad, ceil_mode, Squeeze, Transpose, Reshape from Constant, Pad axes, ...) match onnxruntime-node', async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const cases: { name: string; opset: number; inDims: number[]; nodes: N[]; inits: TensorProto[]; layout: 'nchw' | 'nhwc' }[] = [
      {
        name: 'matmul-add', opset: 13, inDims: [2, 5, 5], layout: 'nchw',
        nodes: [['Conv', ['x', 'w'], ['c'], { auto_pad: 'SAME_UPPER', strides: [2, 2] }], ['Flatten', ['c'], ['f']], ['MatMul', ['f', 'm'], ['mm']], ['Add', ['mm', 'b'], ['a']],
          ['Gemm', ['a', 'g', 'gc'], ['y'], { alpha: 0.5, beta: 2 }], ['Softmax', ['y'], ['p'], { axis: -1 }]],
        inits: [floatTensor('w', [3, 2, 3, 3], rand(54, 1)), floatTensor('m', [27, 6], rand(162, 2)), floatTensor('b', [6], rand(6, 3)), floatTensor('g', [6, 4], rand(24, 4)), floatTensor('gc', [1, 4], rand(4, 5))],
      },
      {
        name: 'auto-pad-ceil', opset: 11, inDims: [3, 9, 8], layout: 'nchw',
        nodes: [['Conv', ['x', 'w', 'wb'], ['c'], { auto_pad: 'SAME_LOWER', kernel_shape: [2, 2] }], ['Relu', ['c'], ['r']],
          ['Conv', ['r', 'w2'], ['d'], { dilations: [2, 2], pads: [2, 1, 2, 1] }],
          ['AveragePool', ['d'], ['ap'], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1, count_include_pad: 0, pads: [1, 1, 1, 1] }],
          ['MaxPool', ['ap'], ['mp'], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }],
          ['GlobalMaxPool', ['mp'], ['gm']], ['Squeeze', ['gm'], ['s'], { axes: [2, 3] }], ['Gemm', ['s', 'g'], ['y'], { transB: 1 }], ['Softmax', ['y'], ['p'], { axis: 1 }]],
        inits: [floatTensor('w', [4, 3, 2, 2], rand(48, 6)), floatTensor('wb', [4], rand(4, 7)), floatTensor('w2', [5, 4, 3, 3], rand(180, 8)), floatTensor('g', [3, 5], rand(15, 9))],
      },
      {
        name: 'nhwc-transpose', opset: 17, inDims: [6, 6, 2], layout: 'nhwc',
        nodes: [['Transpose', ['x'], ['t'], { perm: [0, 3, 1, 2] }], ['Conv', ['t', 'w'], ['c'], { pads: [0, 1, 1, 0] }],
          ['Div', ['c', 'dv'], ['dd']], ['Sub', ['sv', 'dd'], ['sb']], ['Clip', ['sb', 'lo'], ['cl']], ['Transpose', ['cl'], ['back'], { perm: [0, 2, 3, 1] }],
          ['Constant', [], ['shape'], { value_ints: [-1, 36 * 3] }], ['Reshape', ['back', 'shape'], ['f']], ['Identity', ['f'], ['fi']],
          ['Gemm', ['fi', 'g'], ['y']], ['Sigmoid', ['y'], ['p']]],
        inits: [floatTensor('w', [3, 2, 2, 2], rand(24, 10)), floatTensor('dv', [3, 1, 1], Float32Array.of(2, -4, 0.5)), floatTensor('sv', [], Float32Array.of(0.25)), floatTensor('lo', [], Float32Array.of(-0.3)), floatTensor('g', [108, 3], rand(324, 11))],
      },
      {
        name: 'pad-axes-unsqueeze', opset: 18, inDims: [2, 4, 4], layout: 'nchw',
        nodes: [['Pad', ['x', 'pads', '', 'axes'], ['pd']], ['HardSigmoid', ['pd'], ['hs'], { alpha: 0.3, beta: 0.4 }], ['Mul', ['hs', 'x2'], ['m']],
          ['Conv', ['m', 'w'], ['c'], { strides: [2, 2] }], ['Dropout', ['c', 'ratio'], ['dr']], ['Shape', ['dr'], ['sh']],
          ['Gather', ['sh', 'zero'], ['n']], ['Unsqueeze', ['n', 'ax0'], ['n1']], ['Concat', ['n1', 'minus1'], ['target'], { axis: 0 }],
          ['Reshape', ['dr', 'target'], ['f']], ['Gemm', ['f', 'g', 'gb'], ['y'], { transB: 1 }], ['Softmax', ['y'], ['p'], { axis: 1 }]],
        inits: [int64Tensor('pads', [4], [1, 2, 0, 1]), int64Tensor('axes', [2], [2, 3]), floatTensor('x2', [], Float32Array.of(3)), floatTensor('w', [3, 2, 3, 3], rand(54, 12)),
          floatTensor('ratio', [], Float32Array.of(0.3)), { ...int64Tensor('zero', [1], [0]), dims: [] }, int64Tensor('ax0', [1], [0]), int64Tensor('minus1', [1], [-1]), floatTensor('g', [2, 18], rand(36, 13)), floatTensor('gb', [2], rand(2, 14))],
      },
    ];
    for (const c of cases) {
      const path = join(dir, `${c.name}.onnx`);
      writeFileSync(path, graphOnnx(c.opset, c.inDims, c.nodes, c.inits, c.nodes.at(-1)![2][0]!));
      const m = await loadModel(path);
      assert.equal(m.preprocessing?.layout, c.layout, c.name);
      const [a, b, d] = m.inputShape;
      const x = randomImages(64, a, b, d, 21);
      const ours = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
      assertSamePredictions(ours, await ortPredict(path, x, c.layout), `${c.name}`);
      // Written back (a weight changed) it still matches.
      const conv = m.net.layers.find((l) => l.getClassName() === 'Conv2D')!;
      zeroChannelsInPlace(m.net, conv.name, [0]);
      const out = join(dir, `${c.name}-pruned.onnx`);
      await saveModel(m, out);
      const ours2 = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
      assertSamePredictions(ours2, await ortPredict(out, x, c.layout), `${c.name} pruned`);
      // And as a clean goodnet graph (NHWC input), custom layers included.
      const clean = join(dir, `${c.name}-clean.onnx`);
      await saveModel({ ...m, onnx: undefined }, clean);
      assertSamePredictions(ours2, await ortPredict(clean, x, 'nhwc'), `${c.name} exported`);
      x.dispose();
      m.net.dispose();
    }
  } finally {
    cleanup();
  }
});

test('a graph that ends in logits (no Softmax, as most PyTorch classifiers): goodnet outputs probabilities, the written-back ONNX keeps its logits', async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'logits.onnx');
    writeFileSync(path, graphOnnx(13, [2, 6, 6], [['Conv', ['x', 'w', 'wb'], ['c'], { pads: [1, 1, 1, 1] }], ['Relu', ['c'], ['r']], ['Flatten', ['r'], ['f']],
      ['Gemm', ['f', 'g', 'gb'], ['y'], { transB: 1 }]],
    [floatTensor('w', [3, 2, 3, 3], rand(54, 7)), floatTensor('wb', [3], rand(3, 8)), floatTensor('g', [5, 108], rand(540, 9)), floatTensor('gb', [5], rand(5, 10))], 'y'));
    const m = await loadModel(path);
    assert.ok(m.net.layers.some((l) => l.name.startsWith('goodnet_softmax')), 'a softmax layer was appended');
    const x = randomImages(32, 6, 6, 2, 3);
    const ours = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
    const logits = await ortPredict(path, x, 'nchw');
    const probs = logits.map((r) => { const mx = Math.max(...r); const e = r.map((v) => Math.exp(v - mx)); const s = e.reduce((a, b) => a + b, 0); return e.map((v) => v / s); });
    assertSamePredictions(ours, probs, 'softmax of the logits');
    for (const r of ours) assert.ok(Math.abs(r.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    // Written back, the user's graph still ends in logits.
    const out = join(dir, 'logits-back.onnx');
    await saveModel(m, out);
    assertSamePredictions(await ortPredict(out, x, 'nchw'), logits, 'written back: the original logits');
    x.dispose();
    m.net.dispose();
  } finally {
    cleanup();
  }
});
