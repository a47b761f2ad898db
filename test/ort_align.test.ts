/** eval/ort_align.ts: pooled convolutions padded to onnxruntime's channel block give the plain graph's scores. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { alignPooledChannels } from '../src/eval/ort_align.js';
import { decodeModel, num } from '../src/io/onnx_proto.js';
import { onnxBytes } from '../src/io/onnx_write.js';
import { buildArchitecture } from '../src/models/index.js';

await initBackend('wasm');

async function scores(bytes: Uint8Array, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  try {
    const out = await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x, dims) });
    return Float32Array.from(out[s.outputNames[0]!]!.data as Float32Array);
  } finally {
    await s.release();
  }
}

function images(n: number, per: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n * per }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s >>> 8) / 2 ** 24; });
}

const convShapes = (bytes: Uint8Array) => {
  const m = decodeModel(bytes, 'm');
  const w = new Map((m.graph!.initializer ?? []).map((t) => [t.name!, (t.dims ?? []).map(num)]));
  return m.graph!.node!.filter((n) => n.opType === 'Conv').map((n) => w.get(n.input![1]!)!);
};

test('DeepID (20, 40, 60 channels, each pooled): padded to the block, the same scores; the pooled output read by a Flatten goes through a Slice', async () => {
  for (const block of [16, 8]) {
    const net = buildArchitecture('deepid', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 });
    const plain = onnxBytes({ net }, 'deepid');
    const aligned = alignPooledChannels(plain, block);
    const up = (c: number) => Math.ceil(c / block) * block;
    // conv_1..conv_3 widened (out), conv_2..conv_4 read the padded channels (in); conv_4 is not pooled.
    assert.deepEqual(convShapes(aligned).map((d) => [d[0], d[1]]), [[up(20), 1], [up(40), up(20)], [up(60), up(40)], [80, up(60)]]);
    const m = decodeModel(aligned, 'm');
    assert.equal(m.graph!.node!.filter((n) => n.opType === 'Slice' && n.name!.endsWith('__unpad')).length, 1, 'pool_3 is read by a Flatten too');
    const x = images(7, 784, block);
    const a = await scores(plain, x, [7, 28, 28, 1]);
    const b = await scores(aligned, x, [7, 28, 28, 1]);
    assert.equal(b.length, a.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst <= 1e-6, `block ${block}: largest score difference ${worst}`);
  }
});

test('conv -> BatchNormalization -> activation -> pool chains (LeNet-like 6 and 10 channels, tanh and relu, max and average pools): padded, the same scores', async () => {
  const input = tfl.input({ shape: [16, 16, 3] });
  let x = tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ betaInitializer: 'ones', movingMeanInitializer: tfl.initializers.constant({ value: 0.1 }) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'tanh' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ filters: 10, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.averagePooling2d({ poolSize: 2 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }).apply(x) as tfl.SymbolicTensor });
  const plain = onnxBytes({ net }, 'lenet');
  const aligned = alignPooledChannels(plain, 16);
  assert.deepEqual(convShapes(aligned).map((d) => [d[0], d[1]]), [[16, 3], [16, 16]]);
  const bn = decodeModel(aligned, 'm').graph!.initializer!.filter((t) => /running_var|weight$/.test(t.name!) && (t.dims ?? []).length === 1);
  assert.ok(bn.length >= 2 && bn.every((t) => num(t.dims![0]) === 16), 'the BN parameters are padded too');
  const x7 = images(5, 16 * 16 * 3, 9);
  const a = await scores(plain, x7, [5, 16, 16, 3]);
  const b = await scores(aligned, x7, [5, 16, 16, 3]);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  assert.ok(worst <= 1e-6, `largest score difference ${worst}`);
});

test('graphs with nothing to pad come back unchanged: channels on the block, no pool after the conv, block 0', async () => {
  const vgg = onnxBytes({ net: buildArchitecture('vgg', { inputShape: [28, 28, 1], numClasses: 10, seed: 1 }) }, 'vgg'); // 16 and 32 channels
  assert.equal(alignPooledChannels(vgg, 16), vgg);
  const input = tfl.input({ shape: [8, 8, 1] });
  let x = tfl.layers.conv2d({ filters: 5, kernelSize: 3, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  const unpooled = onnxBytes({ net: tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(x) as tfl.SymbolicTensor }) }, 'u');
  assert.equal(alignPooledChannels(unpooled, 16), unpooled);
  const deepid = onnxBytes({ net: buildArchitecture('deepid', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 }) }, 'deepid');
  assert.equal(alignPooledChannels(deepid, 0), deepid);
});

test('PyTorch ONNX exports (fixtures; the VGG ones with odd-channel Conv -> BatchNormalization -> ReLU -> MaxPool, opset 11-17): the same scores after the rewrite', async () => {
  for (const name of ['vgg_op11', 'vgg_op13', 'mobile_op13', 'resnet_op17']) {
    const bytes = new Uint8Array(readFileSync(new URL(`../../test/fixtures/onnx/${name}.onnx`, import.meta.url)));
    const m = decodeModel(bytes, name);
    const dims = m.graph!.input![0]!.type!.tensorType!.shape!.dim!.map((d) => num(d.dimValue) || 2);
    const x = images(dims.reduce((p, q) => p * q, 1) / dims[0]! * 2, 1, 5);
    const d2 = [2, ...dims.slice(1)];
    const a = await scores(bytes, x, d2);
    const rewritten = alignPooledChannels(bytes, 16);
    if (name.startsWith('vgg')) assert.notEqual(rewritten, bytes, `${name}'s odd-channel conv -> BN -> ReLU -> pool chains are rewritten`);
    const b = await scores(rewritten, x, d2);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst <= 1e-5, `${name}: largest score difference ${worst}`);
  }
});

test('no writable temp folder: the block probe answers 0 (plain graphs, nothing rewritten) instead of failing the forward engine', async () => {
  const { spawnSync } = await import('node:child_process');
  const mod = new URL('../src/models/ort_train.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(mod)}); console.log(await m.nchwcBlockSize());`],
    { env: { ...process.env, TMPDIR: '/nonexistent/goodnet-no-tmp' }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0');
});
