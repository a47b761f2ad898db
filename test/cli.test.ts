/**
 * The CLI end to end, as a user runs it: every bad input ends in one line on stderr that
 * names the file and what is wrong, exit code 2, and no stack trace.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { createH5 } from '../src/io/hdf5.js';
import { writeKerasH5 } from '../src/io/keras.js';
import { saveModel } from '../src/io/model.js';
import type { JsonObject } from '../src/io/keras_config.js';
import { ROOT, tempDir, assertBadInput } from './helpers.js';

const BIN = join(ROOT, 'bin', 'goodnet.js');
const { dir, cleanup } = tempDir('goodnet-cli-');
const p = (name: string) => join(dir, name);

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function tinyNet(): tfl.Sequential {
  const net = tfl.sequential({ name: 'tiny' });
  net.add(tfl.layers.conv2d({ name: 'c1', inputShape: [8, 8, 1], filters: 3, kernelSize: 3, activation: 'relu' }));
  net.add(tfl.layers.flatten({ name: 'f' }));
  net.add(tfl.layers.dense({ name: 'd', units: 4, activation: 'softmax' }));
  return net;
}

async function writeData(path: string, data: Float32Array, shape: number[], labels?: Float64Array | Int32Array, withData = true) {
  const f = await createH5(path);
  if (withData) f.create_dataset({ name: 'data', data, shape, dtype: '<f' });
  if (labels) f.create_dataset({ name: 'label', data: labels, shape: [labels.length], dtype: labels instanceof Int32Array ? '<i' : '<d' });
  f.close();
}

const N = 6;
const pixels = (n: number, per: number) => Float32Array.from({ length: n * per }, (_, i) => (i * 37) % 255);

before(async () => {
  await initBackend('wasm');
  const net = tinyNet();
  await saveModel(net, p('tiny.h5'));
  await writeData(p('ok.h5'), pixels(N, 64), [N, 1, 8, 8], Int32Array.from([0, 1, 2, 3, 1, 2]));
  await writeData(p('poison.h5'), pixels(N, 64), [N, 1, 8, 8], Int32Array.from([1, 1, 2, 3, 1, 2]));
  await writeData(p('nodata.h5'), pixels(N, 64), [N, 1, 8, 8], Int32Array.from([0, 1, 2, 3, 1, 2]), false);
  await writeData(p('nolabel.h5'), pixels(N, 64), [N, 1, 8, 8]);
  await writeData(p('wrongshape.h5'), pixels(N, 3 * 55 * 47), [N, 3, 55, 47], Int32Array.from([0, 1, 2, 3, 1, 2]));
  await writeData(p('range.h5'), pixels(N, 64), [N, 1, 8, 8], Int32Array.from([0, 1, 2, 3, 9, 2]));
  await writeData(p('fraction.h5'), pixels(N, 64), [N, 1, 8, 8], Float64Array.from([0, 1, 2.5, 3, 1, 2]));
  await writeData(p('empty.h5'), new Float32Array(0), [0, 1, 8, 8], new Int32Array(0));
  mkdirSync(p('emptydir'));
  writeFileSync(p('junk.h5'), 'this is not an HDF5 file at all\n'.repeat(20));

  // NaN and Inf weights.
  for (const [name, bad] of [['nan.h5', NaN], ['inf.h5', Infinity]] as const) {
    const m = tinyNet();
    const [k, b] = m.getLayer('d').getWeights();
    const kv = k!.dataSync().slice();
    kv[5] = bad;
    m.getLayer('d').setWeights([tf.tensor(kv, k!.shape), b!]);
    await writeKerasH5(m, p(name));
  }
  // A config with a layer Keras has but goodnet cannot run.
  const cfg = tinyNet().toJSON(null, false) as unknown as JsonObject;
  ((cfg.config as JsonObject).layers as JsonObject[])[1]!.class_name = 'Lambda';
  await writeKerasH5(tinyNet(), p('lambda.h5'), cfg);
  // Weights for a layer missing: the config has one Dense more than the weights.
  const bigger = tinyNet();
  bigger.add(tfl.layers.dense({ name: 'extra', units: 4, activation: 'softmax' }));
  await writeKerasH5(tinyNet(), p('noweights.h5'), bigger.toJSON(null, false) as unknown as JsonObject);
});

after(cleanup);

test('eval on good files prints accuracy and ASR, and --json is machine-readable', () => {
  const r = run('eval', '-m', p('tiny.h5'), '-c', p('ok.h5'), '-p', p('poison.h5'), '-t', '1', '--json', '-');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { clean: { count: number; accuracy: number }; poisoned: { count: number; asr: number } };
  assert.equal(j.clean.count, N);
  assert.equal(j.poisoned.count, 3); // the three images labelled 1 (the target) do not count
  assert.ok(j.clean.accuracy >= 0 && j.clean.accuracy <= 1);
  const t = run('eval', '-m', p('tiny.h5'), '-c', p('ok.h5'));
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /\| clean accuracy \|/);
});

test('help teaches every command', () => {
  const r = run('--help');
  assert.equal(r.code, 0);
  for (const cmd of ['eval', 'predict', 'inspect']) {
    assert.match(r.out, new RegExp(`\\n  ${cmd} `));
    const h = run(cmd, '--help');
    assert.equal(h.code, 0);
    assert.match(h.out, /Examples?:/);
  }
});

const cases: [string, string[], RegExp][] = [
  ['model file missing', ['eval', '-m', 'nope.h5', '-c', 'ok.h5'], /nope\.h5: file not found/],
  ['model not HDF5', ['eval', '-m', 'junk.h5', '-c', 'ok.h5'], /junk\.h5: not a model file/],
  ['data not HDF5', ['eval', '-m', 'tiny.h5', '-c', 'junk.h5'], /junk\.h5: not an HDF5 file/],
  ['data file missing', ['eval', '-m', 'tiny.h5', '-c', 'gone.h5'], /gone\.h5: .*not found/],
  ['HDF5 without data', ['eval', '-m', 'tiny.h5', '-c', 'nodata.h5'], /nodata\.h5: .*missing dataset 'data'/],
  ['HDF5 without label', ['eval', '-m', 'tiny.h5', '-c', 'nolabel.h5'], /nolabel\.h5: .*missing dataset 'label'/],
  ['model without weights for a layer', ['eval', '-m', 'noweights.h5', '-c', 'ok.h5'], /noweights\.h5: no weights for layer 'extra'/],
  ['data shape that does not fit the model', ['eval', '-m', 'tiny.h5', '-c', 'wrongshape.h5'], /wrongshape\.h5: .*does not fit the model input 8x8x1/],
  ['labels out of range', ['eval', '-m', 'tiny.h5', '-c', 'range.h5'], /range\.h5: label 9 at row 4 is out of range for a model with 4 classes/],
  ['labels not integers', ['eval', '-m', 'tiny.h5', '-c', 'fraction.h5'], /fraction\.h5: .*not an integer|fraction\.h5: .*integer/],
  ['NaN in weights', ['eval', '-m', 'nan.h5', '-c', 'ok.h5'], /nan\.h5: weight 'd\/kernel:0' of layer 'd' contains NaN/],
  ['Inf in weights', ['eval', '-m', 'inf.h5', '-c', 'ok.h5'], /inf\.h5: weight 'd\/kernel:0' of layer 'd' contains Inf/],
  ['unsupported Keras layer', ['inspect', '-m', 'lambda.h5'], /lambda\.h5: unsupported Keras layer 'Lambda' \(layer 'f'\)/],
  ['empty data set (HDF5)', ['eval', '-m', 'tiny.h5', '-c', 'empty.h5'], /empty\.h5: .*empty/],
  ['empty data set (folder)', ['eval', '-m', 'tiny.h5', '-c', 'emptydir'], /emptydir: .*no images|emptydir: .*empty/],
  ['target out of range', ['eval', '-m', 'tiny.h5', '-p', 'poison.h5', '-t', '7'], /target label 7 is out of range for a model with 4 classes/],
  ['poisoned data without a target', ['eval', '-m', 'tiny.h5', '-p', 'poison.h5'], /needs the attack target label \(--target\)/],
];

for (const [what, args, re] of cases) {
  test(`bad input: ${what}`, () => {
    const abs = args.map((a) => (/\.(h5)$|^emptydir$/.test(a) ? p(a) : a));
    assertBadInput(run(...abs), re);
  });
}

test('bad usage (unknown option, bad number) exits 2 with a hint', () => {
  const r = run('eval', '-m', p('tiny.h5'), '--frobnicate');
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown option '--frobnicate'/);
  const n = run('eval', '-m', p('tiny.h5'), '-c', p('ok.h5'), '--batch-size', 'lots');
  assert.equal(n.code, 2);
  assert.match(n.err, /--batch-size must be an integer/);
});

test('--debug shows the stack trace', () => {
  const r = run('eval', '-m', 'nope.h5', '-c', p('ok.h5'), '--debug');
  assert.equal(r.code, 2);
  assert.match(r.err, /\n\s+at /);
});
