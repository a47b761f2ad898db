/** STRIP: the pieces on hand-made numbers, then the detector on a tiny BadNet built in the test. */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/engine/backend.js';
import { runAttack } from '../src/attack/lab.js';
import { openDataset } from '../src/io/dataset.js';
import { loadModel, type LoadedModel } from '../src/io/model.js';
import '../src/models/index.js'; // weights-only Keras files load into the registered architectures
import {
  calibrateStrip, entropy, normalQuantile, runStrip, stripEntropies, stripFlags, stripThreshold, summarize, superimpose,
  type StripDetector,
} from '../src/detect/strip.js';
import { stripHistogram } from '../src/report/figures.js';
import { main } from '../src/cli/main.js';
import { ROOT, bitEqual, tempDir, assertBadInput } from './helpers.js';

await initBackend('wasm');

const BIN = join(ROOT, 'bin', 'goodnet.js');
const { dir, cleanup } = tempDir('goodnet-strip-');
const lab = join(dir, 'lab');
const f = (p: string) => join(lab, p);
let model: LoadedModel;
let det: StripDetector;
/** Small settings so the whole file runs in seconds on 2 cores. */
const FAST = { n: 20, frr: 0.05, seed: 0 } as const;

before(async () => {
  // Poison rate 0.2: a 2-epoch BadNet whose backdoor works (ASR ~95%) in ~5 s.
  await runAttack({ out: lab, dataset: 'mnist', split: { train: 1500, valid: 300, test: 300 }, epochs: 2, batchSize: 32, seed: 5, poisonRate: 0.2 });
  model = await loadModel(f('models/bd_net.h5'));
  det = await calibrateStrip(model, f('data/cl/valid.h5'), FAST);
});
after(cleanup);

test('entropy: uniform -> log2 K bits, one-hot -> 0, zeros ignored, other bases', () => {
  for (const k of [2, 10, 1283]) assert.ok(Math.abs(entropy(new Array(k).fill(1 / k)) - Math.log2(k)) < 1e-12);
  assert.equal(entropy([0, 0, 1, 0]), 0);
  assert.equal(entropy([0.5, 0.5, 0]), 1);
  assert.ok(Math.abs(entropy([0.25, 0.25, 0.5]) - 1.5) < 1e-15);
  assert.ok(Math.abs(entropy(new Array(10).fill(0.1), Math.E) - Math.log(10)) < 1e-12);
});

test('superimpose: raw pixels added, clipped at pixel max (or not), then scaled', () => {
  const x = [0, 100, 200, 255, 17];
  const b = [10, 100, 100, 255, 0];
  assert.deepEqual([...superimpose(x, b)], [10, 200, 255, 255, 17]);
  assert.deepEqual([...superimpose(x, b, { mode: 'add' })], [10, 200, 300, 510, 17]);
  assert.deepEqual([...superimpose(x, b, { scale: 255 })], [10, 200, 255, 255, 17].map((v) => Math.fround(v / 255)));
  assert.deepEqual([...superimpose([0.25, 0.75], [0.5, 0.5], { pixelMax: 1 })], [0.75, 1]);
  assert.deepEqual([...superimpose([-5, 3], [2, 1])], [0, 4]); // clip is to [0, pixelMax]
  assert.throws(() => superimpose([1, 2], [1]), /2 and 1 values/);
});

test('normal quantile (probit) matches known values', () => {
  assert.ok(Math.abs(normalQuantile(0.01) - -2.3263478740408408) < 1e-14);
  assert.ok(Math.abs(normalQuantile(0.975) - 1.959963984540054) < 1e-14);
  assert.ok(Math.abs(normalQuantile(1e-10) - -6.361340902404056) < 1e-12);
  assert.equal(normalQuantile(0.5), 0);
});

test('threshold: quantile flags floor(frr*m) of m distinct values; normal = mean + std * probit(frr)', () => {
  const rng = seedrandom('t');
  const xs = Array.from({ length: 150 }, () => rng() * 3);
  const t = stripThreshold(xs, 0.05);
  assert.equal(stripFlags(xs, t).reduce((a, v) => a + v, 0), 7); // floor(7.5)
  assert.equal(t, [...xs].sort((a, b) => a - b)[7]);
  const hundred = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(stripFlags(hundred, stripThreshold(hundred, 0.29)).reduce((a, v) => a + v, 0), 29); // 0.29*100 = 28.999...
  assert.equal(stripFlags(hundred, stripThreshold(hundred, 0.001)).reduce((a, v) => a + v, 0), 0);
  assert.equal(stripFlags(hundred, stripThreshold(hundred, 0.999)).reduce((a, v) => a + v, 0), 99);
  // Ties at the cut flag fewer, never more.
  assert.equal(stripFlags([1, 1, 1, 2], stripThreshold([1, 1, 1, 2], 0.5)).reduce((a, v) => a + v, 0), 0);
  const s = summarize(xs);
  assert.ok(Math.abs(stripThreshold(xs, 0.01, 'normal') - (s.mean + s.std * -2.3263478740408408)) < 1e-12);
  assert.throws(() => stripThreshold(xs, 1), /frr .* must be in \(0, 1\)/);
  assert.throws(() => stripThreshold([], 0.1), /no clean entropies/);
});

test('calibration: disjoint seeded halves, and the threshold gives the documented FRR on them', () => {
  assert.equal(det.backgrounds.count, 150);
  assert.equal(det.calibration.images, 150);
  const all = [...det.backgrounds.rows, ...det.calibration.rows].sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: 300 }, (_, i) => i));
  assert.equal(new Set(det.calibration.entropies).size, 150, 'distinct entropies');
  assert.equal(det.calibration.flagged, 7); // floor(0.05 * 150)
  assert.equal(det.calibration.frr, 7 / 150);
  assert.equal(det.threshold, stripThreshold(det.calibration.entropies, 0.05));
  assert.equal(det.forwardPasses, 150 * 21);
});

test('entropy of an input is the mean over N blends with backgrounds drawn by strip:<seed>:<stream>:<row>', async () => {
  const ds = await openDataset(f('data/bd/bd_test.h5'), { expect: model.inputShape });
  const row = 3;
  let x: Float32Array | undefined;
  for await (const b of ds.batches(8)) if (!x) x = b.x.slice(row * 784, (row + 1) * 784);
  ds.close();
  const sc = await stripEntropies(model, det, f('data/bd/bd_test.h5'), { stream: 'mine', rows: [row] });
  const rng = seedrandom(`strip:0:mine:${row}`);
  const blends = new Float32Array(FAST.n * 784);
  for (let c = 0; c < FAST.n; c++) {
    const b = Math.floor(rng() * det.backgrounds.count);
    blends.set(superimpose(x!, det.backgrounds.pixels.subarray(b * 784, (b + 1) * 784)), c * 784);
  }
  const probs = tf.tidy(() => (model.net.predict(tf.tensor4d(blends, [FAST.n, 28, 28, 1])) as tf.Tensor).dataSync());
  let h = 0;
  for (let c = 0; c < FAST.n; c++) h += entropy(probs.subarray(c * 10, c * 10 + 10));
  assert.ok(Math.abs(sc.entropies[0]! - h / FAST.n) < 1e-5, `${sc.entropies[0]} vs ${h / FAST.n}`);
  assert.deepEqual([...sc.rows], [row]);
});

test('STRIP works on the tiny BadNet: trojaned inputs have lower entropy; deterministic with the seed', async () => {
  const opts = { ...FAST, cleanValid: f('data/cl/valid.h5'), cleanTest: f('data/cl/test.h5'), poisonedTest: f('data/bd/bd_test.h5'), target: 0, limit: 100 };
  const r = await runStrip(model, opts);
  const c = r.cleanTest!;
  const p = r.poisonedTest!;
  assert.equal(c.images, 100);
  assert.equal(p.images, 100);
  assert.ok(p.mean < c.mean - 0.3, `poisoned mean H ${p.mean} vs clean ${c.mean}`);
  assert.ok(p.far < 0.5, `FAR ${p.far}`);
  assert.equal(p.far, p.accepted / 100);
  assert.equal(c.frr, c.flagged / 100);
  assert.equal(p.accepted, p.entropies.filter((h) => h >= r.threshold).length);
  assert.equal(r.threshold, det.threshold);
  assert.deepEqual(r.calibration.entropies, [...det.calibration.entropies]);

  // Same seed: same numbers, whatever the batching; another seed: other draws, other numbers.
  const rows = Array.from({ length: 30 }, (_, i) => i);
  const score = (d: StripDetector) => stripEntropies(model, d, f('data/bd/bd_test.h5'), { stream: 'poisoned-test', rows });
  const first = await score(det);
  const repeat = await score(det);
  assert.ok(bitEqual(first.entropies, repeat.entropies));
  const small = await score({ ...det, batchSize: 50 });
  assert.ok(small.entropies.every((h, i) => Math.abs(h - first.entropies[i]!) < 1e-6));
  const limited = new Map([...r.poisonedTest!.rows].map((row, i) => [row, r.poisonedTest!.entropies[i]!]));
  for (const [i, row] of rows.entries()) if (limited.has(row)) assert.equal(limited.get(row), first.entropies[i], `row ${row}`);
  const other = await score({ ...det, seed: 1 });
  assert.ok(other.entropies.every((h, i) => h !== first.entropies[i]));
});

test('the histogram figure', async () => {
  const fig = await stripHistogram({ clean: [1.2, 1.3, 1.5, 0.9], poisoned: [0.1, 0.05], threshold: 0.8 });
  assert.equal(fig.name, 'strip-entropy');
  assert.match(fig.svg, /threshold 0\.8000/);
  assert.deepEqual([...fig.png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  await assert.rejects(stripHistogram({ clean: [], poisoned: [], threshold: 1 }), /no entropies/);
});

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('CLI: per-input table and FAR/FRR', () => {
  const r = run('strip', '-m', f('models/bd_net.h5'), '--clean-valid', f('data/cl/valid.h5'), '--inputs', f('data/bd/bd_valid.h5'),
    '--clean-test', f('data/cl/test.h5'), '--poisoned-test', f('data/bd/bd_test.h5'), '-t', '0', '--n', '8', '--limit', '40');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\| input +\| true \| label \| entropy \| verdict +\|/);
  assert.equal(r.out.split('\n').filter((l) => /^\| #\d+ /.test(l)).length, 270);
  assert.match(r.out, /TROJANED/);
  assert.match(r.out, /FRR: clean images flagged .* \d+\/40 /);
  assert.match(r.out, /FAR: trojaned images accepted .* \d+\/40 /);
});

test('CLI: --out writes strip.json and the histogram, and is not overwritten without --force', async () => {
  const out = join(dir, 'strip-out');
  const args = ['strip', '-m', f('models/bd_net.h5'), '--clean-valid', f('data/cl/valid.h5'), '--poisoned-test', f('data/bd/bd_test.h5'),
    '--n', '4', '--limit', '20', '-o', out];
  const r = await runInProcess(...args);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /FAR: trojaned images accepted .* \d+\/20 /);
  assert.deepEqual(readdirSync(out).sort(), ['strip-entropy.png', 'strip-entropy.svg', 'strip.json']);
  const j = JSON.parse(readFileSync(join(out, 'strip.json'), 'utf8')) as { settings: { n: number }; poisonedTest: { entropies: number[]; rows: number[] } };
  assert.equal(j.settings.n, 4);
  assert.equal(j.poisonedTest.entropies.length, 20);
  assert.equal(j.poisonedTest.rows.length, 20);
  assertBadInput(await runInProcess(...args), /already exists/);
  assert.equal((await runInProcess(...args, '--force')).code, 0);
  assert.deepEqual(readdirSync(dir).sort(), ['lab', 'strip-out']);
});

/** Run the CLI in-process (no process start-up): exit code and what it wrote to stdout and stderr. */
async function runInProcess(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const [w1, w2] = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((chunk: string | Uint8Array) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(['node', 'goodnet', ...args]);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

test('CLI: bad input is one line and exit 2', async () => {
  const base = ['strip', '-m', f('models/bd_net.h5'), '--clean-valid', f('data/cl/valid.h5'), '--clean-test', f('data/cl/test.h5')];
  assertBadInput(await runInProcess(...base, '--frr', '1.5'), /--frr must be in \(0, 1\).*got '1\.5'/);
  assertBadInput(await runInProcess(...base, '--frr', 'abc'), /--frr must be in \(0, 1\)/);
  assertBadInput(await runInProcess(...base, '--n', '0'), /--n must be an integer >= 1, got '0'/);
  assertBadInput(await runInProcess(...base, '--held-out', '1'), /--held-out must be in \(0, 1\)/);
  assertBadInput(await runInProcess('strip', '-m', f('models/bd_net.h5'), '--clean-valid', f('data/cl/valid.h5')), /nothing to check/);
  assertBadInput(await runInProcess(...base, '--pixel-max', '1'), /raw pixel value .* is outside 0\.\.1/);
  assertBadInput(await runInProcess('strip', '-m', f('models/bd_net.h5'), '--clean-valid', join(dir, 'missing.h5'), '--inputs', f('data/cl/test.h5')),
    /missing\.h5: file or folder not found/);
  assertBadInput(await runInProcess('strip', '-m', f('models/bd_net.h5'), '--clean-valid', f('data/cl/valid.h5'), '--poisoned-test', f('data/bd/bd_test.h5'), '-t', '12'),
    /target label 12 is out of range/);
});
