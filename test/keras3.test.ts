/**
 * Keras 3: `.keras` zips and Keras 3's legacy `.h5`, read against Keras's own predictions
 * (test/fixtures/keras3, made by make_fixtures.py), written back so Keras 3 loads them, and
 * refused with one line when damaged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { strFromU8, strToU8, unzipSync, zipSync } from 'fflate';
import { initBackend } from '../src/engine/backend.js';
import { decodeImage } from '../src/io/images.js';
import { h5Attr, openH5 } from '../src/io/hdf5.js';
import { configLayers, kerasSnakeCase, kerasWeightPaths, KERAS_MEMBER_LIMITS } from '../src/io/keras3.js';
import { isKeras3Config, parseModelConfig, toTfjsTopology, type JsonObject } from '../src/io/keras_config.js';
import { loadModel, saveFormatFor, saveModel, type LoadedModel } from '../src/io/model.js';
import { PREPROCESSING_KEY } from '../src/io/preprocess.js';
import { assertBadInput, bitEqual, predictArray, ROOT, sameWeights, tempDir } from './helpers.js';

await initBackend('wasm');

const FIX = join(ROOT, 'test', 'fixtures', 'keras3');
const BIN = join(ROOT, 'bin', 'goodnet.js');
interface Expected { images: string[]; scale: number; probs: number[][] }
const expected = JSON.parse(readFileSync(join(FIX, 'predictions.json'), 'utf8')) as Record<string, Expected>;

async function fixtureInput(e: Expected): Promise<tf.Tensor4D> {
  const imgs = await Promise.all(e.images.map((p) => decodeImage(join(FIX, p))));
  const { width, height, channels } = imgs[0]!;
  const data = new Float32Array(imgs.length * width * height * channels);
  imgs.forEach((img, i) => img.data.forEach((v, j) => { data[i * img.data.length + j] = v / e.scale; }));
  return tf.tensor4d(data, [imgs.length, height, width, channels]);
}

function checkAgainstKeras(m: LoadedModel, e: Expected, x: tf.Tensor4D, what: string): void {
  const k = m.numClasses;
  const got = predictArray(m.net, x);
  assert.equal(got.length, e.probs.length * k, what);
  let worst = 0;
  e.probs.forEach((row, i) => {
    const mine = Array.from(got.subarray(i * k, (i + 1) * k));
    const top = (a: number[]) => a.indexOf(Math.max(...a));
    assert.equal(top(mine), top(row), `${what}: top-1 of image ${i}`);
    row.forEach((p, j) => { worst = Math.max(worst, Math.abs(p - mine[j]!)); });
  });
  assert.ok(worst <= 1e-4, `${what}: max |p - keras| = ${worst}`);
}

for (const name of ['functional', 'sequential'] as const) {
  test(`Keras 3 ${name} model (.keras and legacy .h5) predicts what Keras predicted`, async () => {
    const e = expected[name]!;
    const x = await fixtureInput(e);
    const keras = await loadModel(join(FIX, `${name}.keras`));
    assert.equal(keras.format, 'keras3');
    checkAgainstKeras(keras, e, x, `${name}.keras`);
    const h5 = await loadModel(join(FIX, `${name}.h5`));
    assert.equal(h5.format, 'keras-full');
    checkAgainstKeras(h5, e, x, `${name}.h5`);
    assert.ok(sameWeights(keras.net, h5.net), 'both files hold the same weights');
    x.dispose();
  });
}

test('a .keras model written back keeps its config.json verbatim and its predictions bit for bit', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const src = join(FIX, 'functional.keras');
    const m = await loadModel(src);
    const out = join(dir, 'copy.keras');
    await saveModel(m, out, { preprocessing: { scale: 255, mean: [0.5] } });
    const member = (f: string, n: string) => strFromU8(unzipSync(readFileSync(f), { filter: (e) => e.name === n })[n]!);
    assert.equal(member(out, 'config.json'), JSON.stringify(JSON.parse(member(src, 'config.json'))));
    const meta = JSON.parse(member(out, 'metadata.json')) as Record<string, unknown>;
    assert.match(String(meta.keras_version), /^3\./);
    assert.deepEqual(JSON.parse(String(meta[PREPROCESSING_KEY])), { scale: 255, mean: [0.5] });
    const back = await loadModel(out);
    assert.deepEqual(back.preprocessing, { scale: 255, mean: [0.5] });
    assert.ok(sameWeights(m.net, back.net));
    const x = tf.randomUniform([2, 16, 16, 3], 0, 255, 'float32', 3);
    assert.ok(bitEqual(predictArray(m.net, x), predictArray(back.net, x)));
  } finally {
    cleanup();
  }
});

function tfjsNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [10, 10, 2], name: 'img' });
  const c = tfl.layers.conv2d({ name: 'c1', filters: 4, kernelSize: 3, padding: 'same' }).apply(input) as tfl.SymbolicTensor;
  const bn = tfl.layers.batchNormalization({ name: 'bn' }).apply(c) as tfl.SymbolicTensor;
  const r = tfl.layers.reLU({ name: 'r' }).apply(bn) as tfl.SymbolicTensor;
  const dw = tfl.layers.depthwiseConv2d({ name: 'dw', kernelSize: 3, padding: 'same' }).apply(r) as tfl.SymbolicTensor;
  const add = tfl.layers.add({ name: 'sum' }).apply([r, dw]) as tfl.SymbolicTensor;
  const z = tfl.layers.zeroPadding2d({ name: 'z', padding: 1 }).apply(add) as tfl.SymbolicTensor;
  const p = tfl.layers.maxPooling2d({ name: 'p', poolSize: 2 }).apply(z) as tfl.SymbolicTensor;
  const g = tfl.layers.globalAveragePooling2d({ name: 'g' }).apply(p) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ name: 'out', units: 3, activation: 'softmax' }).apply(g) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out, name: 'from_tfjs' });
  const b = net.getLayer('bn');
  b.setWeights(b.getWeights().map((w, i) => tf.randomUniform(w.shape, 0.5, 1.5, 'float32', 11 + i)));
  return net;
}

function tfjsSequential(): tfl.Sequential {
  const net = tfl.sequential({ name: 'seq_tfjs' });
  net.add(tfl.layers.conv2d({ name: 'c1', inputShape: [8, 8, 1], filters: 3, kernelSize: 3, activation: 'relu' }));
  net.add(tfl.layers.averagePooling2d({ name: 'ap', poolSize: 2 }));
  net.add(tfl.layers.flatten({ name: 'f' }));
  net.add(tfl.layers.dropout({ name: 'dr', rate: 0.2 }));
  net.add(tfl.layers.dense({ name: 'd', units: 4, activation: 'softmax' }));
  return net;
}

test('a tfjs model is written as a Keras 3 .keras with a generated config, and read back bit for bit', async () => {
  const { dir, cleanup } = tempDir();
  try {
    assert.equal(saveFormatFor('x.keras'), 'keras3');
    assert.equal(saveFormatFor('x.KERAS'), 'keras3');
    assert.equal(saveFormatFor('x.h5'), 'keras');
    for (const [net, shape] of [[tfjsNet(), [10, 10, 2]], [tfjsSequential(), [8, 8, 1]]] as const) {
      const out = join(dir, `${net.name}.keras`);
      await saveModel(net, out);
      const cfg = JSON.parse(strFromU8(unzipSync(readFileSync(out), { filter: (e) => e.name === 'config.json' })['config.json']!)) as { class_name: string; config: { layers: { inbound_nodes: unknown[] }[] } };
      assert.equal(cfg.class_name, 'Functional');
      assert.ok(cfg.config.layers.slice(1).every((l) => typeof (l.inbound_nodes[0] as { args?: unknown }).args === 'object'), 'Keras 3 inbound nodes');
      const back = await loadModel(out);
      assert.equal(back.format, 'keras3');
      assert.equal(back.preprocessing, undefined);
      assert.ok(sameWeights(net, back.net), `${net.name}: weights`);
      const x = tf.randomUniform([2, ...shape], 0, 1, 'float32', 5);
      assert.ok(bitEqual(predictArray(net, x), predictArray(back.net, x)), `${net.name}: predictions`);
    }
  } finally {
    cleanup();
  }
});

test('Keras naming of weight groups: to_snake_case', () => {
  assert.equal(kerasSnakeCase('Conv2D'), 'conv2d');
  assert.equal(kerasSnakeCase('ReLU'), 're_lu');
  assert.equal(kerasSnakeCase('BatchNormalization'), 'batch_normalization');
  assert.equal(kerasSnakeCase('GlobalAveragePooling2D'), 'global_average_pooling2d');
  assert.equal(kerasSnakeCase('DepthwiseConv2D'), 'depthwise_conv2d');
});

// ---------------------------------------------------------------------------------------
// Keras 3 itself loads what goodnet writes (skips without python3 + keras)

function havePythonKeras(): boolean {
  const r = spawnSync('python3', ['-c', 'import keras, sys; sys.exit(0 if keras.__version__.startswith("3") else 1)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0;
}
const PY = havePythonKeras() ? {} : { skip: 'python3 with Keras 3 not importable: Keras-side check skipped' };

test('Keras 3 loads goodnet-written .keras (and .h5) files and predicts the same', PY, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: [string, LoadedModel | tfl.LayersModel, number[]][] = [
      ['from_keras_h5', await loadModel(join(FIX, 'functional.h5')), [16, 16, 3]], // generated config
      ['from_keras_seq', await loadModel(join(FIX, 'sequential.keras')), [28, 28, 1]], // its own config
      ['from_tfjs', tfjsNet(), [10, 10, 2]],
      ['from_tfjs_seq', tfjsSequential(), [8, 8, 1]],
      ['keras3_as_h5', await loadModel(join(FIX, 'functional.keras')), [16, 16, 3]], // Keras 2 layout .h5
    ];
    const args: string[] = [];
    const mine: Float32Array[] = [];
    for (const [name, model, shape] of cases) {
      const out = join(dir, name.endsWith('_h5') ? `${name}.h5` : `${name}.keras`);
      await saveModel(model, out);
      const x = tf.randomUniform([3, ...shape], 0, 1, 'float32', 9);
      const inputs = join(dir, `${name}.json`);
      writeFileSync(inputs, JSON.stringify({ shape: x.shape, data: Array.from(x.dataSync()) }));
      args.push(out, inputs);
      mine.push(predictArray('net' in model ? model.net : model, x));
    }
    // One Python process for all (starting TensorFlow is the slow part).
    const r = spawnSync('python3', [join(FIX, 'keras_predict.py'), ...args], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, `keras failed: ${r.stderr.slice(-2000)}`);
    const all = (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { probs: number[][][] }).probs;
    cases.forEach(([name], k) => {
      const probs = all[k]!.flat();
      assert.equal(probs.length, mine[k]!.length, name);
      const worst = Math.max(...probs.map((p, i) => Math.abs(p - mine[k]![i]!)));
      assert.ok(worst <= 1e-4, `${name}: max |goodnet - keras| = ${worst}`);
    });
  } finally {
    cleanup();
  }
});

// ---------------------------------------------------------------------------------------
// Bad input

function members(): Record<string, Uint8Array> {
  return unzipSync(readFileSync(join(FIX, 'sequential.keras')));
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Set the declared uncompressed size of `name` in the central directory (a lying zip). */
function declareSize(zip: Uint8Array, name: string, size: number): Uint8Array {
  const out = new Uint8Array(zip);
  const dv = new DataView(out.buffer);
  for (let i = 0; i + 46 < out.length; i++) {
    if (dv.getUint32(i, true) !== 0x02014b50) continue;
    const n = dv.getUint16(i + 28, true);
    if (strFromU8(out.subarray(i + 46, i + 46 + n)) === name) dv.setUint32(i + 24, size, true);
  }
  return out;
}

test('damaged .keras files end in one line naming the file and the member, exit 2', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const m = members();
    const write = (name: string, bytes: Uint8Array) => { const p = join(dir, name); writeFileSync(p, bytes); return p; };
    const cases: [string, Uint8Array, RegExp][] = [
      ['noweights.keras', zipSync({ 'config.json': m['config.json']!, 'metadata.json': m['metadata.json']! }), /noweights\.keras: \.keras zip has no 'model\.weights\.h5' member/],
      ['noconfig.keras', zipSync({ 'model.weights.h5': m['model.weights.h5']! }), /noconfig\.keras: \.keras zip has no 'config\.json' member/],
      ['badjson.keras', zipSync({ ...m, 'config.json': strToU8('{"class_name": "Sequential", ') }), /badjson\.keras: \.keras member 'config\.json' is not valid JSON/],
      ['corrupt.keras', readFileSync(join(FIX, 'sequential.keras')).subarray(0, 5000), /corrupt\.keras: not a valid \.keras zip/],
      ['bomb.keras', declareSize(zipSync({ ...m, 'config.json': [m['config.json']!, { level: 9 }] }), 'config.json', 0xfffffff0), /bomb\.keras: \.keras member 'config\.json' declares 4294967280 bytes, over the \d+-byte limit/],
      ['badweights.keras', zipSync({ ...m, 'model.weights.h5': strToU8('not hdf5') }), /badweights\.keras: \.keras member 'model\.weights\.h5' is not a readable HDF5 file/],
      ['lambda.keras', zipSync({ ...m, 'config.json': strToU8(strFromU8(m['config.json']!).replace('"ReLU"', '"Lambda"')) }), /lambda\.keras: unsupported Keras layer 'Lambda' \(layer 'relu'\) in Keras 3 config/],
    ];
    assert.ok(KERAS_MEMBER_LIMITS['config.json']! < 0xfffffff0);
    for (const [name, bytes, re] of cases) {
      const path = write(name, bytes);
      await assert.rejects(loadModel(path), (e: Error) => re.test(e.message) && !e.message.includes('\n'), name);
    }
    // The CLI says the same in one line, exit 2.
    assertBadInput(cli('inspect', '-m', join(dir, 'bomb.keras')), /bomb\.keras: .*over the/);
    assertBadInput(cli('inspect', '-m', join(dir, 'noweights.keras')), /no 'model\.weights\.h5' member/);
  } finally {
    cleanup();
  }
});

test('a lying deflated member never inflates past its declared size', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const m = members();
    // config.json declared as 10 bytes but inflating to ~14 kB: output is cut at the declaration, so it is not JSON.
    const zip = declareSize(zipSync({ ...m, 'config.json': [m['config.json']!, { level: 9 }] }), 'config.json', 10);
    const p = join(dir, 'liar.keras');
    writeFileSync(p, zip);
    await assert.rejects(loadModel(p), /liar\.keras: \.keras member 'config\.json' (is not valid JSON|declares an impossible)/);
  } finally {
    cleanup();
  }
});

test("Keras 3 legacy .h5 config: an unknown layer is refused naming 'Keras 3 config' and the layer", async () => {
  const f = await openH5(join(FIX, 'functional.h5'));
  let text: string;
  try {
    text = String(h5Attr(f as never, 'model_config'));
  } finally {
    f.close();
  }
  const cfg = parseModelConfig(text, 'functional.h5');
  assert.ok(isKeras3Config(cfg));
  assert.doesNotThrow(() => toTfjsTopology(cfg, 'functional.h5'));
  const bad = parseModelConfig(text.replace('"class_name": "DepthwiseConv2D"', '"class_name": "Lambda"'), 'functional.h5');
  assert.throws(() => toTfjsTopology(bad, 'functional.h5'), /functional\.h5: unsupported Keras layer 'Lambda' \(layer 'dw'\) in Keras 3 config/);
  const perChannel = parseModelConfig(text.replace('"scale": 0.00392156862745098', '"scale": [1, 2, 3]'), 'functional.h5');
  assert.throws(() => toTfjsTopology(perChannel, 'functional.h5'), /Rescaling 'rescale' with a per-channel scale is not supported/);
});

test('weight-group names computed from the config match what Keras 3 wrote (files without name attributes)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const name of ['functional', 'sequential']) {
      const m = unzipSync(readFileSync(join(FIX, `${name}.keras`)));
      const cfg = JSON.parse(strFromU8(m['config.json']!)) as JsonObject;
      const computed = kerasWeightPaths(configLayers(cfg));
      const h5 = join(dir, `${name}.weights.h5`);
      writeFileSync(h5, m['model.weights.h5']!);
      const f = await openH5(h5);
      try {
        const groups = (f.get('layers') as unknown as { keys(): string[] }).keys();
        assert.equal(computed.size, groups.length, name);
        for (const g of groups) {
          const layer = h5Attr(f.get(`layers/${g}/vars`) as never, 'name');
          assert.equal(computed.get(String(layer)), `layers/${g}`, `${name}: layer ${String(layer)}`);
        }
      } finally {
        f.close();
      }
    }
  } finally {
    cleanup();
  }
});
