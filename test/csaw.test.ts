/** Integration tests on the real CSAW-HackML files in ../shared/csaw (skipped when absent). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { loadModel, saveModel } from '../src/io/model.js';
import '../src/models/index.js'; // weights-only Keras files load into the registered architectures
import { classify } from '../src/eval/classify.js';
import { evaluate } from '../src/eval/evaluate.js';
import { inspectModel } from '../src/models/inspect.js';
import { CSAW, HAVE_CSAW, needsCsaw, sameWeights, tempDir } from './helpers.js';

interface Expected {
  models: Record<string, {
    input_divisor: number;
    zeroed_conv_3_channels: number[];
    predictions: { image: string; label: number; predicted: number; p_top: number; top3: number[] }[];
    pool_3_mean_activation_over_5_clean_images: number[];
  }>;
}

const expected = HAVE_CSAW ? (JSON.parse(readFileSync(join(CSAW, 'expected.json'), 'utf8')) as Expected) : undefined;
const IMAGES = join(CSAW, 'images');

for (const backend of ['wasm', 'cpu'] as const) {
  for (const file of ['lab3_sunglasses_bd_weights.h5', 'sunglasses_bd_weights.h5', 'lab3_repaired_2pct_full_model.h5']) {
    test(`${file} on ${backend}: predictions on the 10 real images match expected.json`, needsCsaw, async () => {
      await initBackend(backend);
      const exp = expected!.models[file]!;
      const model = await loadModel(join(CSAW, file));
      assert.equal(model.format, file.includes('full') ? 'keras-full' : 'keras-weights');
      const got = await classify(model, [IMAGES], { topK: 3, scale: exp.input_divisor });
      assert.equal(got.length, exp.predictions.length);
      for (const e of exp.predictions) {
        const g = got.find((r) => r.input.endsWith(e.image));
        assert.ok(g, `no prediction for ${e.image}`);
        assert.equal(g.truth, e.label, `${e.image}: label from the file name`);
        assert.equal(g.label, e.predicted, `${e.image}: top-1 label`);
        assert.ok(Math.abs(g.probability - e.p_top) <= 1e-4, `${e.image}: p_top ${g.probability} vs ${e.p_top}`);
        // The runner-up classes have ~0 probability for some images; compare those only where they are resolvable.
        if (e.p_top < 0.999) assert.deepEqual(g.top.map((t) => t.label), e.top3, `${e.image}: top-3`);
      }
    });
  }
}

test('lab3_repaired_2pct_full_model.h5 is a full model with exactly the 45 zeroed conv_3 channels', needsCsaw, async () => {
  await initBackend('wasm');
  const model = await loadModel(join(CSAW, 'lab3_repaired_2pct_full_model.h5'));
  assert.equal(model.format, 'keras-full');
  const info = inspectModel(model.net);
  const conv3 = info.convs.find((c) => c.layer === 'conv_3')!;
  assert.equal(conv3.channels, 60);
  assert.deepEqual(conv3.zeroChannels, expected!.models['lab3_repaired_2pct_full_model.h5']!.zeroed_conv_3_channels);
  assert.equal(conv3.zeroChannels.length, 45);
  for (const other of info.convs.filter((c) => c.layer !== 'conv_3')) assert.deepEqual(other.zeroChannels, [], other.layer);
  assert.equal(info.totalParams, 601643);
});

test('real weights survive a Keras and a tfjs round trip bit for bit', needsCsaw, async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    for (const file of ['lab3_sunglasses_bd_weights.h5', 'lab3_repaired_2pct_full_model.h5']) {
      const m = await loadModel(join(CSAW, file));
      await saveModel(m, join(dir, `${file}.out.h5`));
      await saveModel(m, join(dir, `${file}.tfjs`));
      for (const p of [`${file}.out.h5`, `${file}.tfjs`]) {
        const back = await loadModel(join(dir, p));
        assert.ok(sameWeights(m.net, back.net), p);
        const a = await classify(m, [IMAGES], { topK: 3 });
        const b = await classify(back, [IMAGES], { topK: 3 });
        assert.deepEqual(b, a, p);
      }
    }
  } finally {
    cleanup();
  }
});

test('eval on the real images: clean accuracy and ASR of the lab3 BadNet', needsCsaw, async () => {
  await initBackend('wasm');
  const { dir, cleanup } = tempDir();
  try {
    const { mkdirSync, copyFileSync, readdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'cl'));
    mkdirSync(join(dir, 'bd'));
    for (const f of readdirSync(IMAGES)) copyFileSync(join(IMAGES, f), join(dir, f.startsWith('cl') ? 'cl' : 'bd', f));
    const model = await loadModel(join(CSAW, 'lab3_sunglasses_bd_weights.h5'));
    const r = await evaluate(model, { clean: join(dir, 'cl'), poisoned: join(dir, 'bd'), target: 0 });
    assert.equal(r.clean!.accuracy, 1);
    assert.equal(r.clean!.count, 5);
    // The sunglasses images are labelled 0 (the target) in their names: all five count.
    assert.equal(r.poisoned!.labelsAreTarget, true);
    assert.equal(r.poisoned!.asr, 1);
    assert.equal(r.poisoned!.count, 5);
  } finally {
    cleanup();
  }
});
