/** The BadNet lab end to end on tiny configurations (seconds): runAttack and `goodnet attack`. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { runAttack } from '../src/attack/lab.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadModel } from '../src/io/model.js';
import { openDataset } from '../src/io/dataset.js';
import { ROOT, sameWeights, tempDir } from './helpers.js';

await initBackend('wasm');

const TINY = { dataset: 'mnist', split: { train: 2000, valid: 300, test: 300 }, epochs: 3, batchSize: 32, seed: 3 } as const;

test('runAttack writes the CSAW layout; the model learns the backdoor; eval on the files reproduces attack.json', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'lab');
    const s = await runAttack({ ...TINY, out });
    for (const f of ['models/bd_net.h5', 'models/bd_net/model.json', 'data/cl/valid.h5', 'data/cl/test.h5',
      'data/bd/bd_valid.h5', 'data/bd/bd_test.h5', 'trigger.png', 'attack.json']) {
      assert.ok(existsSync(join(out, f)), f);
    }
    assert.deepEqual(readdirSync(dir), ['lab'], 'no temp folders left behind');
    assert.equal(s.split.train, 2000);
    assert.equal(s.poisonedTrainingImages, 200);
    // Poisoned sets: no target-class images, true labels kept, shapes as the lab stores them.
    const bd = await openDataset(join(out, 'data/bd/bd_test.h5'));
    const cl = await openDataset(join(out, 'data/cl/test.h5'));
    assert.equal(bd.layout, 'nchw');
    assert.deepEqual(bd.imageShape, [28, 28, 1]);
    assert.ok(bd.labels.every((l) => l !== 0));
    assert.equal(bd.length, cl.labels.filter((l) => l !== 0).length);
    bd.close();
    cl.close();
    // The backdoor is learnt (chance would be ~10%) and the model is still a classifier.
    assert.ok(s.results.asrTest > 0.6, `ASR ${s.results.asrTest}`);
    assert.ok(s.results.cleanTestAccuracy > 0.5, `accuracy ${s.results.cleanTestAccuracy}`);
    // The written model, read back, gives exactly attack.json's numbers (raw pixels, no --scale).
    const model = await loadModel(join(out, 'models/bd_net.h5'));
    const r = await evaluate(model, { clean: join(out, 'data/cl/test.h5'), poisoned: join(out, 'data/bd/bd_test.h5'), target: 0 });
    const written = JSON.parse(readFileSync(join(out, 'attack.json'), 'utf8')) as typeof s;
    assert.equal(r.clean!.accuracy, written.results.cleanTestAccuracy);
    assert.equal(r.poisoned!.asr, written.results.asrTest);
    // The tfjs copy is the same model.
    const tfjsCopy = await loadModel(join(out, 'models/bd_net'));
    assert.ok(sameWeights(model.net, tfjsCopy.net));
    // Both say they take raw pixels (the 1/255 is folded into conv_1).
    assert.deepEqual(model.preprocessing, { scale: 1 });
    assert.deepEqual(tfjsCopy.preprocessing, { scale: 1 });
  } finally {
    cleanup();
  }
});

test('same seed, same split, same poisoned images and same weights; another seed differs', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const small = { ...TINY, split: { train: 300, valid: 100, test: 100 }, epochs: 1 };
    await runAttack({ ...small, out: join(dir, 'a') });
    await runAttack({ ...small, out: join(dir, 'b') });
    await runAttack({ ...small, seed: 4, out: join(dir, 'c') });
    // HDF5 files carry creation times, so compare what they hold, not their bytes.
    const content = async (d: string, f: string) => {
      const ds = await openDataset(join(dir, d, f));
      const parts: number[] = [...ds.labels];
      for await (const b of ds.batches(1000)) parts.push(...b.x);
      ds.close();
      return parts;
    };
    for (const f of ['data/cl/valid.h5', 'data/cl/test.h5', 'data/bd/bd_test.h5']) {
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => content(d, f)));
      assert.deepEqual(a, b, f);
      assert.notDeepEqual(a, c, f);
    }
    const [ma, mb, mc] = await Promise.all(['a', 'b', 'c'].map((d) => loadModel(join(dir, d, 'models/bd_net.h5'))));
    assert.ok(sameWeights(ma!.net, mb!.net));
    assert.ok(!sameWeights(ma!.net, mc!.net));
  } finally {
    cleanup();
  }
});

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'attack', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('attack: bad input is one line, exit 2, and nothing is written', () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'out');
    writeFileSync(join(dir, 'broken.png'), 'not a png');
    const base = ['--out', out, '--dataset', 'mnist', '--train-size', '200', '--valid-size', '50', '--test-size', '50', '-e', '1'];
    const cases: [string[], RegExp][] = [
      [['-t', '10'], /target 10 is outside the classes 0\.\.9/],
      [['--poison-rate', '1.5'], /--poison-rate must be in \[0, 1\)/],
      [['--poison-rate', '-0.1'], /--poison-rate must be in \[0, 1\)/],
      [['--trigger-size', '30'], /trigger .*30x30.* does not fit 28x28/],
      [['--trigger', 'image', '--trigger-image', join(dir, 'broken.png')], /broken\.png: /],
      [['--trigger-alpha', '0.5'], /--trigger-alpha does not apply to a patch trigger/],
    ];
    for (const [extra, re] of cases) {
      const r = cli(...base, ...extra);
      assert.equal(r.code, 2, `${extra.join(' ')}: ${r.err}`);
      const lines = r.err.trimEnd().split('\n');
      assert.equal(lines.length, lines[0]!.startsWith('error:') ? 2 : 1, r.err);
      assert.match(r.err, re);
      assert.ok(!existsSync(out), `${extra.join(' ')} left ${out}`);
      assert.deepEqual(readdirSync(dir), ['broken.png']);
    }
  } finally {
    cleanup();
  }
});

test('attack: a data set with one class is refused; an existing DIR needs --force', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { createH5 } = await import('../src/io/hdf5.js');
    const f = await createH5(join(dir, 'one.h5'));
    f.create_dataset({ name: 'data', data: new Float32Array(20 * 32 * 32).fill(7), shape: [20, 1, 32, 32], dtype: '<f' });
    f.create_dataset({ name: 'label', data: new Float64Array(20).fill(3), shape: [20], dtype: '<d' });
    f.close();
    await assert.rejects(runAttack({ out: join(dir, 'o'), dataset: join(dir, 'one.h5'), target: 0, epochs: 1 }),
      /only one class; a backdoor needs at least two/);
    assert.ok(!existsSync(join(dir, 'o')));
    await assert.rejects(runAttack({ out: dir, epochs: 1 }), /already exists \(use --force to overwrite\)/);
  } finally {
    cleanup();
  }
});
