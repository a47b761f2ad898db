/**
 * The lab's modern architectures (vgg, resnet): shapes and layer names, training on wasm
 * (BatchNormalization gradients, the Tile override), seeded determinism, the raw-pixel fold,
 * weights-only loading, early stopping, and `attack --arch` end to end on tiny data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { overridesInstalled } from '../src/engine/kernels/index.js';
import { tileInto } from '../src/engine/kernels/tile.js';
import { ARCHITECTURE_NAMES, buildArchitecture, resnet, vgg } from '../src/models/index.js';
import { datasetAccuracy, train, type TrainingSet } from '../src/models/train.js';
import { foldInputScale, runAttack } from '../src/attack/lab.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { encodePng } from '../src/io/images.js';
import { loadModel } from '../src/io/model.js';
import { evaluate } from '../src/eval/evaluate.js';
import { h5SpecOf, writeH5Model } from '../src/fuzz/seeds.js';
import { ROOT, predictArray, sameWeights, tempDir } from './helpers.js';

await initBackend('wasm');

const tmp = tempDir('goodnet-archs-');
process.on('exit', tmp.cleanup);
const T = tmp.dir;

/** Seeded pseudo-images with labels a small net can learn (class = brightest quadrant-ish stripe). */
function toySet(n: number, shape: [number, number, number], classes: number, seed = 1): TrainingSet {
  const [h, w, c] = shape;
  const images = new Uint8Array(n * h * w * c);
  const labels = new Int32Array(n);
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < n; i++) {
    const label = i % classes;
    labels[i] = label;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) {
      const on = Math.floor((y * classes) / h) === label;
      images[((i * h + y) * w + x) * c + k] = Math.round((on ? 160 : 40) + 60 * rnd());
    }
  }
  return { images, labels, n, shape };
}

const ALLOWED = new Set(['InputLayer', 'Conv2D', 'BatchNormalization', 'ReLU', 'Add', 'MaxPooling2D', 'GlobalAveragePooling2D', 'Flatten', 'Dense']);

test('vgg and resnet: output shapes, named layers, standard layer classes only', () => {
  assert.deepEqual(ARCHITECTURE_NAMES, ['deepid', 'vgg', 'resnet']);
  const v = buildArchitecture('vgg', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  assert.deepEqual(v.outputs[0]!.shape, [null, 10]);
  assert.deepEqual(v.getLayer('block2_relu2').outputShape, [null, 14, 14, 32]);
  assert.deepEqual(v.getLayer('block2_pool').outputShape, [null, 7, 7, 32]);
  assert.deepEqual(v.getLayer('fc').outputShape, [null, 128]);
  const r = buildArchitecture('resnet', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  assert.deepEqual(r.outputs[0]!.shape, [null, 10]);
  assert.deepEqual(r.getLayer('stem_pool').outputShape, [null, 14, 14, 16]);
  assert.deepEqual(r.getLayer('block3_relu').outputShape, [null, 4, 4, 64]);
  assert.deepEqual(r.getLayer('gap').outputShape, [null, 64]);
  // block1 keeps 16 channels (identity shortcut); block2/3 change width (1x1 projection).
  assert.throws(() => r.getLayer('block1_proj'));
  assert.deepEqual(r.getLayer('block2_proj').outputShape, [null, 7, 7, 32]);
  assert.deepEqual(r.getLayer('block3_add').outputShape, [null, 4, 4, 64]);
  for (const net of [v, r]) {
    for (const l of net.layers) assert.ok(ALLOWED.has(l.getClassName()), `${net.name}: ${l.getClassName()}`);
  }
  // Tiny and colour inputs build too; nonsense is refused with one line.
  assert.deepEqual(vgg({ inputShape: [8, 8, 3], numClasses: 3 }).outputs[0]!.shape, [null, 3]);
  assert.deepEqual(resnet({ inputShape: [6, 5, 3], numClasses: 2 }).outputs[0]!.shape, [null, 2]);
  assert.throws(() => vgg({ inputShape: [3, 3, 1] }), /vgg with 2 blocks needs inputs of at least 4x4 pixels, got 3x3/);
  assert.throws(() => resnet({ numClasses: 1 }), /resnet needs >= 1 channel and >= 2 classes/);
  assert.throws(() => buildArchitecture('alexnet', {}), /unknown architecture 'alexnet' \(built in: deepid, vgg, resnet\)/);
});

test('the wasm Tile override matches the cpu kernel (and tileInto on plain arrays)', async () => {
  assert.ok(overridesInstalled());
  const dst = new Float32Array(12);
  tileInto(Float32Array.from([1, 2, 3]), [1, 3], [2, 2], dst);
  assert.deepEqual([...dst], [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
  tileInto(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3, 1], [1, 1, 2], dst);
  assert.deepEqual([...dst], [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]);
  const cases: [number[], number[], 'float32' | 'int32' | 'bool'][] = [
    [[1, 1, 1, 5], [3, 4, 2, 1], 'float32'], [[2, 3], [2, 3], 'float32'], [[4], [3], 'int32'], [[2, 1, 3], [1, 4, 1], 'bool'],
    [[3, 2, 2, 3], [2, 1, 3, 2], 'float32'], [[], [], 'float32'], [[2, 0, 3], [2, 2, 1], 'float32'],
  ];
  for (const [shape, reps, dtype] of cases) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = Array.from({ length: size }, (_, i) => (dtype === 'bool' ? i % 2 : i * 1.5 - 3));
    const run = async (backend: 'cpu' | 'wasm') => {
      await initBackend(backend);
      const x = tf.tensor(values, shape, dtype);
      const y = tf.tile(x, reps);
      const out = { shape: y.shape, data: [...(await y.data())] };
      tf.dispose([x, y]);
      return out;
    };
    const cpu = await run('cpu');
    const wasm = await run('wasm');
    assert.deepEqual(wasm, cpu, `tile ${shape} by ${reps} (${dtype})`);
  }
});

test('vgg and resnet train on wasm: BN statistics move, same seed gives the same weights', async () => {
  const set = toySet(48, [12, 12, 1], 3);
  for (const arch of ['vgg', 'resnet'] as const) {
    const make = (seed: number) => buildArchitecture(arch, { inputShape: [12, 12, 1], numClasses: 3, seed });
    const a = make(5);
    const bnName = arch === 'vgg' ? 'block1_bn1' : 'stem_bn';
    const before = a.getLayer(bnName).getWeights()[2]!.dataSync().slice();
    const h = await train(a, set, { epochs: 1, batchSize: 16, seed: 5, scale: 255 });
    assert.equal(h.length, 1);
    assert.ok(Number.isFinite(h[0]!.loss) && h[0]!.loss > 0, `${arch} loss ${h[0]!.loss}`);
    const after = a.getLayer(bnName).getWeights()[2]!.dataSync();
    assert.ok(after.some((v, i) => v !== before[i]), `${arch}: moving mean unchanged`);
    const b = make(5);
    await train(b, set, { epochs: 1, batchSize: 16, seed: 5, scale: 255 });
    assert.ok(sameWeights(a, b), `${arch}: same seed, different weights`);
    const c = make(6);
    await train(c, set, { epochs: 1, batchSize: 16, seed: 6, scale: 255 });
    assert.ok(!sameWeights(a, c), `${arch}: another seed, same weights`);
  }
});

test('foldInputScale: the folded model on raw pixels predicts as the trained one on pixels/255', async () => {
  const set = toySet(32, [12, 12, 3], 4);
  for (const arch of ['deepid', 'vgg', 'resnet'] as const) {
    const net = buildArchitecture(arch, { inputShape: [12, 12, 3], numClasses: 4, seed: 1 });
    await train(net, set, { epochs: 1, batchSize: 16, seed: 1, scale: 255 });
    const raw = tf.tensor4d(Float32Array.from(set.images), [set.n, 12, 12, 3]);
    const scaled = tf.div(raw, 255);
    const want = predictArray(net, scaled);
    const folded = foldInputScale(net, 255);
    assert.equal(folded, { deepid: 'conv_1', vgg: 'block1_conv1', resnet: 'stem_conv' }[arch]);
    const got = predictArray(net, raw);
    const worst = want.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
    assert.ok(worst < 1e-5, `${arch}: max |difference| ${worst}`);
    // Unfolded, raw pixels would be far off (BN and ReLU see 255x the values).
    foldInputScale(net, 1 / 255);
    const unfolded = predictArray(net, raw);
    assert.ok(unfolded.some((v, i) => Math.abs(v - want[i]!) > 1e-3), `${arch}: raw pixels did not matter`);
    tf.dispose([raw, scaled]);
  }
});

async function writeWeightsOnly(net: tfl.LayersModel, path: string): Promise<void> {
  await writeH5Model(h5SpecOf(net, { keras_version: '2.13.1', backend: 'tensorflow' }, ''), path);
}

test('weights-only Keras files load into vgg and resnet (--weights-arch)', async () => {
  const v = vgg({ inputShape: [20, 20, 3], numClasses: 5, seed: 2, filters: [4, 8], units: 16 });
  const vPath = join(T, 'vgg_weights.h5');
  await writeWeightsOnly(v, vPath);
  const lv = await loadModel(vPath, { arch: 'vgg' });
  assert.equal(lv.format, 'keras-weights');
  assert.deepEqual(lv.inputShape, [20, 20, 3]); // from fc's kernel: 5x5x8 features, 2 blocks
  assert.equal(lv.numClasses, 5);
  assert.ok(sameWeights(v, lv.net));
  const ins = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'inspect', '-m', vPath, '--weights-arch', 'vgg'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(ins.status, 0, ins.stderr);
  assert.match(ins.stdout, /\(keras-weights\): input 20x20x3, 5 classes/);

  const r = resnet({ inputShape: [16, 16, 1], numClasses: 3, seed: 2, stemFilters: 4, blocks: [4, 8] });
  const rPath = join(T, 'resnet_weights.h5');
  await writeWeightsOnly(r, rPath);
  await assert.rejects(loadModel(rPath, { arch: 'resnet' }),
    (e: Error) => e.message === `${rPath}: resnet weights do not fix the image size (global average pooling); pass --input-shape HxWxC`);
  const lr = await loadModel(rPath, { arch: 'resnet', inputShape: [16, 16, 1] });
  assert.ok(sameWeights(r, lr.net));
  // Another size works too (global average pooling), the same function of the weights.
  const other = await loadModel(rPath, { arch: 'resnet', inputShape: [10, 12, 1] });
  assert.deepEqual(other.inputShape, [10, 12, 1]);
  // The wrong architecture is named in one line with the file.
  await assert.rejects(loadModel(rPath, { arch: 'vgg' }), /resnet_weights\.h5: weights do not look like a vgg network \(no fc\/kernel\)/);
});

test('early stopping on held-out accuracy restores the best epoch; scoring alone changes nothing', async () => {
  const set = toySet(60, [8, 8, 1], 3, 7);
  const held = toySet(30, [8, 8, 1], 3, 8);
  const make = () => vgg({ inputShape: [8, 8, 1], numClasses: 3, seed: 3, filters: [4], units: 8 });
  const opts = { epochs: 5, batchSize: 20, seed: 3, scale: 255, learningRate: 0.05 };
  const plain = make();
  const hp = await train(plain, set, opts);
  const scored = make();
  const hs = await train(scored, set, { ...opts, validation: held });
  assert.ok(sameWeights(plain, scored), 'scoring a validation set must not change training');
  assert.deepEqual(hs.map((h) => h.loss), hp.map((h) => h.loss));
  assert.ok(hs.every((h) => h.validAccuracy !== undefined) && hp.every((h) => h.validAccuracy === undefined));

  const stopped = make();
  const h = await train(stopped, set, { ...opts, validation: held, patience: 1 });
  const accs = h.map((e) => e.validAccuracy!);
  const best = accs.indexOf(Math.max(...accs));
  // This seed stops early (validation accuracy stalls), one epoch after its best.
  assert.ok(h.length < opts.epochs, `never stopped: ${accs}`);
  assert.equal(h.length - 1 - best, 1, `stopped at ${h.length} with best ${best + 1}: ${accs}`);
  assert.equal(datasetAccuracy(stopped, held, 255), accs[best], 'the best epoch\'s weights are kept');
  const ref = make();
  await train(ref, set, { ...opts, epochs: best + 1 });
  assert.ok(sameWeights(stopped, ref), 'weights are those after the best epoch');
  await assert.rejects(train(make(), set, { ...opts, patience: 2 }), /early stopping \(patience\) needs a validation set/);
  await assert.rejects(train(make(), set, { ...opts, validation: held, patience: 0 }), /patience must be an integer >= 1, got 0/);
});

/** A small CSAW data file: 3 classes of 12x12x3 images. */
async function smallDataset(): Promise<string> {
  const path = join(T, 'small.h5');
  if (existsSync(path)) return path;
  const s = toySet(150, [12, 12, 3], 3, 11);
  await writeCsawData(path, s.images as Uint8Array, s.labels, s.n, 12, 12, 3);
  return path;
}

test('runAttack --arch vgg: files, attack.json and the written model agree; raw pixels in', async () => {
  const out = join(T, 'vgg-lab');
  const s = await runAttack({ out, arch: 'vgg', dataset: 'mnist', split: { train: 600, valid: 100, test: 100 }, epochs: 1, batchSize: 16, seed: 1, patience: 1 });
  for (const f of ['models/bd_net.h5', 'models/bd_net/model.json', 'data/cl/valid.h5', 'data/bd/bd_test.h5', 'trigger.png', 'attack.json']) {
    assert.ok(existsSync(join(out, f)), f);
  }
  const written = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8')) as typeof s;
  assert.equal(written.arch, 'vgg');
  assert.equal(written.training.bestEpoch, 1);
  const model = await loadModel(join(out, 'models/bd_net.h5'));
  assert.ok(model.net.layers.some((l) => l.name === 'block2_bn2'));
  const r = await evaluate(model, { clean: join(out, 'data/cl/test.h5'), poisoned: join(out, 'data/bd/bd_test.h5'), target: 0 });
  assert.equal(r.clean!.accuracy, written.results.cleanTestAccuracy);
  assert.equal(r.poisoned!.asr, written.results.asrTest);
  assert.ok(sameWeights(model.net, (await loadModel(join(out, 'models/bd_net'))).net));
  // In training, validation was scored on pixels/255 before the fold; the written model reads raw pixels.
  assert.ok(Math.abs(written.training.history[0]!.validAccuracy! - written.results.cleanValidAccuracy) <= 0.01,
    `${written.training.history[0]!.validAccuracy} vs ${written.results.cleanValidAccuracy}`);
  assert.ok(s.results.cleanTestAccuracy > 0.5, `accuracy ${s.results.cleanTestAccuracy}`);
});

test('every trigger kind with every new architecture', async () => {
  const data = await smallDataset();
  const png = join(T, 'mark.png');
  writeFileSync(png, encodePng(new Uint8Array(3 * 3 * 4).map((_, i) => (i % 4 === 3 ? 255 : 200 * (i % 2))), 3, 3, 4));
  const triggers = [{ kind: 'patch' as const, size: 3 }, { kind: 'blend' as const, alpha: 0.2 }, { kind: 'image' as const, image: png, x: 8, y: 8 }];
  for (const arch of ['vgg', 'resnet'] as const) {
    for (const trigger of triggers) {
      const out = join(T, `t-${arch}-${trigger.kind}`);
      const s = await runAttack({ out, arch, dataset: data, trigger, split: { train: 90, valid: 30, test: 30 }, epochs: 1, batchSize: 30, seed: 2 });
      assert.equal(s.arch, arch);
      assert.equal(s.trigger.kind, trigger.kind);
      assert.equal(s.poisonedTrainingImages, 9);
      assert.ok(s.results.poisonedTestImages === 20, `${arch}/${trigger.kind}: ${s.results.poisonedTestImages}`);
      assert.ok(s.results.asrTest >= 0 && s.results.asrTest <= 1);
    }
  }
});

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'attack', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('goodnet attack --arch resnet end to end; bad --arch and --patience are refused before any work', async () => {
  const data = await smallDataset();
  const out = join(T, 'cli-resnet');
  const base = ['--dataset', data, '--train-size', '90', '--valid-size', '30', '--test-size', '30', '-e', '2', '--batch-size', '30'];
  const r = cli('--out', out, '--arch', 'resnet', '--patience', '1', ...base);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^resnet/m);
  const s = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8')) as { arch: string; training: { patience: number; history: unknown[] } };
  assert.equal(s.arch, 'resnet');
  assert.equal(s.training.patience, 1);
  const model = await loadModel(join(out, 'models/bd_net.h5'));
  assert.ok(model.net.layers.some((l) => l.name === 'block3_add'));
  for (const [extra, re] of [[['--arch', 'alexnet'], /alexnet/], [['--patience', '0'], /--patience/]] as const) {
    const bad = join(T, 'never');
    const b = cli('--out', bad, ...extra, ...base);
    assert.equal(b.code, 2, b.err);
    assert.match(b.err, re);
    assert.ok(!existsSync(bad));
  }
  assert.ok(!readdirSync(T).some((f) => f.startsWith('.never')), 'no temporary output left');
});
