/**
 * Input preprocessing x' = (x / scale - mean[c]) / std[c]: the data pipeline, the one
 * precedence rule (file metadata vs flags), the record in Keras .h5 / tfjs model.json and
 * prune's summary.json, and that a repaired model evaluates as designed without flags.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { openDataset } from '../src/io/dataset.js';
import { createH5 } from '../src/io/hdf5.js';
import { encodePng } from '../src/io/images.js';
import { loadModel, saveModel } from '../src/io/model.js';
import { PREPROCESSING_KEY, resolvePreprocessing, type Preprocessing } from '../src/io/preprocess.js';
import { evaluate } from '../src/eval/evaluate.js';
import { GoodnetError } from '../src/errors.js';
import { ROOT, assertBadInput, tempDir } from './helpers.js';

await initBackend('wasm');

const BIN = join(ROOT, 'bin', 'goodnet.js');
const { dir, cleanup } = tempDir('goodnet-preproc-');
const p = (name: string) => join(dir, name);
after(cleanup);

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const H = 6, W = 6, C = 3;
const PER = H * W * C;
const PRE: Preprocessing = { scale: 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** Seeded raw pixels 0..255, NHWC. */
function rawPixels(n: number, seed: number): Float32Array {
  const x = new Float32Array(n * PER);
  let s = seed;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    x[i] = s % 256;
  }
  return x;
}

/** NHWC -> NCHW (the CSAW lab's storage layout). */
function toNchw(x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < n; r++) for (let i = 0; i < H * W; i++) for (let c = 0; c < C; c++) out[r * PER + c * H * W + i] = x[r * PER + i * C + c]!;
  return out;
}

function expected(raw: Float32Array, pre: Preprocessing): Float32Array {
  return Float32Array.from(raw, (v, i) => {
    const c = i % C;
    const m = pre.mean ? pre.mean[pre.mean.length === 1 ? 0 : c]! : 0;
    const s = pre.std ? pre.std[pre.std.length === 1 ? 0 : c]! : 1;
    return (v / pre.scale - m) / s;
  });
}

async function writeH5(path: string, rawNhwc: Float32Array, labels: Int32Array) {
  const n = labels.length;
  const f = await createH5(path);
  f.create_dataset({ name: 'data', data: toNchw(rawNhwc, n), shape: [n, C, H, W], dtype: '<f' });
  f.create_dataset({ name: 'label', data: labels, shape: [n], dtype: '<i' });
  f.close();
}

function tinyNet(): tfl.Sequential {
  const net = tfl.sequential({ name: 'tiny' });
  net.add(tfl.layers.conv2d({ name: 'conv', inputShape: [H, W, C], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotNormal({ seed: 1 }) }));
  net.add(tfl.layers.maxPooling2d({ name: 'pool', poolSize: 2 }));
  net.add(tfl.layers.flatten({ name: 'flat' }));
  net.add(tfl.layers.dense({ name: 'out', units: 4, activation: 'softmax', kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }));
  return net;
}

/** The net's labels for raw images under `pre`: data labelled so that the model is 100% right. */
function labelsOf(net: tfl.LayersModel, raw: Float32Array, pre: Preprocessing): Int32Array {
  const n = raw.length / PER;
  return tf.tidy(() => Int32Array.from(tf.argMax(net.predict(tf.tensor4d(expected(raw, pre), [n, H, W, C])) as tf.Tensor, 1).dataSync()));
}

const N = 48;
let net: tfl.Sequential;
const raw = { cv: rawPixels(N, 1), pv: rawPixels(N, 2), ct: rawPixels(N, 3), pt: rawPixels(N, 4) };

before(async () => {
  net = tinyNet();
  await saveModel(net, p('plain.h5')); // no metadata
  await saveModel({ net, source: 'x', format: 'tfjs', inputShape: [H, W, C], numClasses: 4, preprocessing: PRE }, p('pre.h5'));
  await writeH5(p('cv.h5'), raw.cv, labelsOf(net, raw.cv, PRE));
  await writeH5(p('ct.h5'), raw.ct, labelsOf(net, raw.ct, PRE));
  // Poisoned sets: true labels "not the target" wherever the model does not answer 0 ... anything goes for the test.
  await writeH5(p('pv.h5'), raw.pv, Int32Array.from(labelsOf(net, raw.pv, PRE), (l) => (l + 1) % 4));
  await writeH5(p('pt.h5'), raw.pt, Int32Array.from(labelsOf(net, raw.pt, PRE), (l) => (l + 1) % 4));
});

test('HDF5 (NCHW) and image folders: x\' = (x / scale - mean[c]) / std[c], per channel and with one value', async () => {
  const n = 4;
  const x = rawPixels(n, 7);
  await writeH5(p('small.h5'), x, Int32Array.from([0, 1, 2, 3]));
  mkdirSync(p('imgs'));
  for (let i = 0; i < n; i++) {
    writeFileSync(p(`imgs/im${i}-label${i}.png`), encodePng(x.subarray(i * PER, (i + 1) * PER), W, H, 3));
  }
  for (const pre of [PRE, { scale: 1, mean: [100], std: [50] }, { scale: 2, mean: [1, 2, 3] }]) {
    const want = expected(x, pre);
    for (const src of [p('small.h5'), p('imgs')]) {
      const ds = await openDataset(src, { scale: pre.scale, mean: pre.mean, std: (pre as Preprocessing).std, expect: [H, W, C] });
      const got = new Float32Array(n * PER);
      for await (const b of ds.batches(3)) got.set(b.x, b.start * PER);
      ds.close();
      for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `${src} ${JSON.stringify(pre)} value ${i}: ${got[i]} vs ${want[i]}`);
    }
  }
  // Wrong lengths and zero std: one-line errors before any image is read.
  await assert.rejects(openDataset(p('small.h5'), { mean: [1, 2] }), (e: Error) => e instanceof GoodnetError && /mean has 2 values; the model input has 3 channels/.test(e.message));
  await assert.rejects(openDataset(p('imgs'), { std: [1, 0, 1] }), (e: Error) => e instanceof GoodnetError && /std must not be zero/.test(e.message));
});

test('resolvePreprocessing: the file is used without flags; flags override field by field and say so', () => {
  const m = { preprocessing: PRE, inputShape: [H, W, C], source: 'm.h5' };
  const none = resolvePreprocessing(m, {});
  assert.deepEqual(none.preprocessing, PRE);
  assert.equal(none.from, 'file');
  assert.equal(none.overridden, false);
  const flags = resolvePreprocessing(m, { scale: 1 });
  assert.deepEqual(flags.preprocessing, { ...PRE, scale: 1 });
  assert.equal(flags.from, 'flags');
  assert.equal(flags.overridden, true);
  assert.equal(resolvePreprocessing(m, { scale: 255 }).overridden, false, 'the same value is no override');
  const bare = resolvePreprocessing({ inputShape: [H, W, C] }, {});
  assert.deepEqual(bare.preprocessing, { scale: 1 });
  assert.equal(bare.from, 'default');
  assert.throws(() => resolvePreprocessing(m, { mean: [1, 2] }), /m\.h5.*mean has 2 values/);
  assert.throws(() => resolvePreprocessing(m, { std: [0] }), /std must not be zero/);
});

test('round trip through Keras .h5 (root attribute) and tfjs model.json (userDefinedMetadata); h5py reads the attribute', async (t) => {
  const withLayout: Preprocessing = { ...PRE, layout: 'nchw' };
  const m = { net, source: 'x', format: 'tfjs' as const, inputShape: [H, W, C] as [number, number, number], numClasses: 4, preprocessing: withLayout };
  await saveModel(m, p('rt.h5'));
  await saveModel(m, p('rt_tfjs'));
  assert.deepEqual((await loadModel(p('rt.h5'))).preprocessing, withLayout);
  assert.deepEqual((await loadModel(p('rt_tfjs'))).preprocessing, withLayout);
  const doc = JSON.parse(readFileSync(p('rt_tfjs/model.json'), 'utf8')) as { userDefinedMetadata: Record<string, unknown> };
  assert.deepEqual(doc.userDefinedMetadata[PREPROCESSING_KEY], withLayout);
  assert.equal((await loadModel(p('plain.h5'))).preprocessing, undefined);
  const py = spawnSync('python3', ['-c', `import h5py, json, sys
f = h5py.File(sys.argv[1], 'r')
v = f.attrs['${PREPROCESSING_KEY}']
print(json.dumps(json.loads(v.decode() if isinstance(v, bytes) else v)))
print(sorted(f['model_weights'].keys()))`, p('rt.h5')], { encoding: 'utf8' });
  if (py.status !== 0 && /No module named|ENOENT/.test(`${py.stderr}${py.error ?? ''}`)) {
    t.skip('python3 with h5py not available');
    return;
  }
  assert.equal(py.status, 0, py.stderr);
  const [json, keys] = py.stdout.trim().split('\n');
  assert.deepEqual(JSON.parse(json!), withLayout);
  assert.match(keys!, /'conv'.*'out'/);
});

test('CLI: bad --mean/--std lengths and zero std end in one line, exit 2', () => {
  assertBadInput(run('eval', '-m', p('plain.h5'), '-c', p('cv.h5'), '--mean', '0.1,0.2'), /plain\.h5: preprocessing mean has 2 values; the model input has 3 channels/);
  assertBadInput(run('eval', '-m', p('plain.h5'), '-c', p('cv.h5'), '--std', '0.2,0,0.2'), /std must not be zero/);
});

test('CLI: the file\'s preprocessing applies without flags; flags override it with a note', async () => {
  const noFlags = run('eval', '-m', p('pre.h5'), '-c', p('cv.h5'), '--json', '-');
  assert.equal(noFlags.code, 0, noFlags.err);
  const r = JSON.parse(noFlags.out) as { clean: { accuracy: number }; preprocessing: Preprocessing };
  assert.equal(r.clean.accuracy, 1, 'labels are the model\'s own answers under the recorded preprocessing');
  assert.deepEqual(r.preprocessing, PRE);
  assert.equal(noFlags.err, '');
  // The same model without metadata needs the flags to get there.
  const plain = await evaluate(await loadModel(p('plain.h5')), { clean: p('cv.h5') });
  assert.ok(plain.clean!.accuracy < 1, `raw pixels give other answers (${plain.clean!.accuracy})`);
  const over = run('eval', '-m', p('pre.h5'), '-c', p('cv.h5'), '--scale', '1', '--mean', '0', '--std', '1', '--json', '-');
  assert.equal(over.code, 0, over.err);
  assert.equal((JSON.parse(over.out) as { clean: { accuracy: number } }).clean.accuracy, plain.clean!.accuracy);
  const lines = over.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, over.err);
  assert.match(lines[0]!, /pre\.h5 records preprocessing \(scale 255, mean 0\.485,0\.456,0\.406, std 0\.229,0\.224,0\.225\); overridden by the flags: scale 1, mean 0, std 1/);
  // B and B' get the same input: B's (here none, so the default); B' recording another is said.
  const g = run('goodnet', '--bad', p('plain.h5'), '--repaired', p('pre.h5'), '--clean-test', p('ct.h5'), '--poisoned-test', p('pt.h5'), '-t', '0', '--json', '-');
  assert.equal(g.code, 0, g.err);
  assert.match(g.err.trim(), /^goodnet: note: \S*pre\.h5 records preprocessing \(scale 255, [^)]*\); both models get scale 1 \(from the default\)$/);
  assert.deepEqual((JSON.parse(g.out) as { preprocessing: Preprocessing }).preprocessing, { scale: 1 });
});

test('prune records the preprocessing in summary.json and every B\'_X; eval of B\'_X without flags gives prune\'s numbers', () => {
  const out = p('prune');
  const r = run('prune', '-m', p('plain.h5'), '--clean-valid', p('cv.h5'), '--poisoned-valid', p('pv.h5'),
    '--clean-test', p('ct.h5'), '--poisoned-test', p('pt.h5'), '-t', '0', '--order', 'asc', '--thresholds', '5,20', '-o', out,
    '--scale', '255', '--mean', PRE.mean!.join(','), '--std', PRE.std!.join(','), '--input-layout', 'nhwc');
  assert.equal(r.code, 0, r.err);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as {
    scale: number; preprocessing: Preprocessing; baseline: { validAccuracy: number };
    sweeps: { picks: { threshold: number; step: number | null; model?: { keras: string; tfjs: string } }[] }[];
    goodnet: { threshold: number; repaired: { accuracy: number; asr: number } }[];
  };
  assert.deepEqual(summary.preprocessing, { ...PRE, layout: 'nhwc' });
  assert.equal(summary.scale, 255);
  assert.equal(summary.baseline.validAccuracy, 1);
  const picks = summary.sweeps[0]!.picks.filter((k) => k.step !== null && k.step > 0);
  assert.ok(picks.length > 0, 'some threshold is reached');
  const pick = picks[0]!;
  const row = summary.goodnet.find((g) => g.threshold === pick.threshold)!;
  for (const m of [pick.model!.keras, pick.model!.tfjs]) {
    const e = run('eval', '-m', join(out, m), '-c', p('ct.h5'), '-p', p('pt.h5'), '-t', '0', '--json', '-');
    assert.equal(e.code, 0, e.err);
    const j = JSON.parse(e.out) as { clean: { accuracy: number }; poisoned: { asr: number }; preprocessing: Preprocessing };
    assert.deepEqual(j.preprocessing, { ...PRE, layout: 'nhwc' }, m);
    assert.equal(j.clean.accuracy, row.repaired.accuracy, `${m} accuracy`);
    assert.equal(j.poisoned.asr, row.repaired.asr, `${m} ASR`);
  }
  const ins = run('inspect', '-m', join(out, pick.model!.keras));
  assert.equal(ins.code, 0, ins.err);
  assert.match(ins.out, /input 6x6x3/);
  assert.match(ins.out, /input layout: nhwc \(recorded in the file\)/);
  assert.match(ins.out, /preprocessing: scale 255, mean 0\.485,0\.456,0\.406, std 0\.229,0\.224,0\.225 \(recorded in the file\)/);
  const plain = run('inspect', '-m', p('plain.h5'));
  assert.match(plain.out, /input layout: nhwc \(assumed: not recorded in the file\)/);
  assert.match(plain.out, /preprocessing: scale 1 \(assumed: not recorded in the file\)/);
});

test('the report of a prune folder states the preprocessing in its inputs section', async () => {
  const { writeReport } = await import('../src/report/build.js');
  const html = readFileSync(await writeReport(p('prune')), 'utf8');
  assert.match(html, /<p id="preprocessing">Preprocessing [^<]*: scale 255, mean 0\.485,0\.456,0\.406, std 0\.229,0\.224,0\.225, input layout nhwc<\/p>/);
});

test('STRIP: the file\'s preprocessing applies after the raw blend, as the same flags would', async () => {
  const { calibrateStrip } = await import('../src/detect/strip.js');
  const opts = { n: 4, seed: 1 };
  const fromFile = await calibrateStrip(await loadModel(p('pre.h5')), p('cv.h5'), opts);
  const fromFlags = await calibrateStrip(await loadModel(p('plain.h5')), p('cv.h5'), { ...opts, scale: PRE.scale, mean: PRE.mean, std: PRE.std });
  const raw = await calibrateStrip(await loadModel(p('plain.h5')), p('cv.h5'), opts);
  assert.deepEqual(Array.from(fromFile.calibration.entropies), Array.from(fromFlags.calibration.entropies));
  assert.deepEqual([fromFile.scale, fromFile.mean, fromFile.std], [PRE.scale, PRE.mean, PRE.std]);
  assert.notDeepEqual(Array.from(fromFile.calibration.entropies), Array.from(raw.calibration.entropies));
  // The background pool stays raw pixels (the blend happens before the preprocessing).
  assert.deepEqual(fromFile.backgrounds.pixels, raw.backgrounds.pixels);
});

test('fine-pruning reads normalized data and its model records the preprocessing', async () => {
  const { runFinePrune } = await import('../src/defense/fineprune.js');
  const r = await runFinePrune({
    model: await loadModel(p('pre.h5')), cleanValid: p('cv.h5'), pruneFraction: 0.25, epochs: 1, batchSize: 16,
    cleanTest: p('ct.h5'), poisonedTest: p('pt.h5'), target: 0, out: p('fp.h5'),
  });
  // Labels are the model's own answers under PRE: unpruned it is 100% right, so 2 of 8 channels pruned stays close.
  assert.equal(r.fineTune.history.length, 2);
  assert.deepEqual((await loadModel(p('fp.h5'))).preprocessing, PRE);
  const e = await evaluate(await loadModel(p('fp.h5')), { clean: p('ct.h5'), poisoned: p('pt.h5'), target: 0 });
  assert.equal(e.clean!.accuracy, r.after!.accuracy);
  assert.equal(e.poisoned!.asr, r.after!.asr);
});

test('predict and the GoodNet functions use the recorded preprocessing of B by default', async () => {
  const { classify } = await import('../src/eval/classify.js');
  const { evaluateGoodNet } = await import('../src/defense/goodnet.js');
  const pre = await loadModel(p('pre.h5'));
  const answers = await classify(pre, [p('cv.h5')]);
  assert.deepEqual(answers.map((a) => a.label), answers.map((a) => a.truth), 'labels are the model\'s answers under PRE');
  const g = await evaluateGoodNet({ bad: pre, repaired: pre, cleanTest: p('ct.h5'), poisonedTest: p('pt.h5'), target: 0 });
  assert.equal(g.bad.accuracy, 1);
  assert.equal(g.goodnet.accuracy, 1);
  const raw = await evaluateGoodNet({ bad: pre, repaired: pre, cleanTest: p('ct.h5'), poisonedTest: p('pt.h5'), target: 0, scale: 1, mean: [0], std: [1] });
  assert.ok(raw.bad.accuracy < 1, 'explicit options override the file');
});
