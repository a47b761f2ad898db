/** Fine-pruning on a tiny BadNet built in the test. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { runAttack, type AttackSummary } from '../src/attack/lab.js';
import { loadModel, type LoadedModel } from '../src/io/model.js';
import '../src/models/index.js'; // weights-only Keras files load into the registered architectures
import { inspectModel } from '../src/models/inspect.js';
import { pruneChannels } from '../src/defense/mask.js';
import { fineTune, readAll, runFinePrune } from '../src/defense/fineprune.js';
import { runPrune } from '../src/defense/prune.js';
import { tempDir } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-fp-');
const f = (p: string) => join(dir, 'lab', p);
let model: LoadedModel;
let attack: AttackSummary;

before(async () => {
  attack = await runAttack({ out: join(dir, 'lab'), dataset: 'mnist', split: { train: 1500, valid: 400, test: 300 }, epochs: 2, batchSize: 32, seed: 7 });
  model = await loadModel(f('models/bd_net.h5'));
});
after(cleanup);

test('fine-tuning keeps the pruned channels at zero and changes the other weights', async () => {
  const pruned = [0, 3, 5, 8, 13, 21, 34];
  const net = await pruneChannels(model.net, 'conv_3', pruned);
  const before = net.getLayer('conv_3').getWeights()[0]!.dataSync().slice();
  const clean = await readAll(f('data/cl/valid.h5'), model.inputShape);
  const r = await fineTune(net, 'conv_3', pruned, clean, { epochs: 2, learningRate: 1e-3 });
  assert.equal(r.history.length, 3);
  assert.ok(r.bestEpoch >= 0 && r.bestEpoch <= 2);
  const conv3 = inspectModel(net).convs.find((c) => c.layer === 'conv_3')!;
  assert.deepEqual(conv3.zeroChannels, pruned);
  if (r.bestEpoch > 0) {
    const afterW = net.getLayer('conv_3').getWeights()[0]!.dataSync();
    assert.ok(afterW.some((v, i) => v !== before[i]), 'weights moved');
  }
  net.dispose();
});

test('on a tiny BadNet, fine-pruning lowers the ASR', async () => {
  const r = await runFinePrune({
    model, cleanValid: f('data/cl/valid.h5'), pruneFraction: 0.8, epochs: 3, learningRate: 1e-3,
    cleanTest: f('data/cl/test.h5'), poisonedTest: f('data/bd/bd_test.h5'), target: 0, out: join(dir, 'fp.h5'),
  });
  assert.equal(r.pruned.length, 48);
  assert.ok(r.after!.asr < attack.results.asrTest, `ASR ${r.after!.asr} vs BadNet ${attack.results.asrTest}`);
  const saved = await loadModel(join(dir, 'fp.h5'));
  assert.deepEqual(inspectModel(saved.net).convs.find((c) => c.layer === 'conv_3')!.zeroChannels, [...r.pruned].sort((a, b) => a - b));
});

test('prune --fine-tune records FP_X before/after for every B\'_X of the asc order', async () => {
  const s = await runPrune({
    model, cleanValid: f('data/cl/valid.h5'), poisonedValid: f('data/bd/bd_valid.h5'), cleanTest: f('data/cl/test.h5'),
    poisonedTest: f('data/bd/bd_test.h5'), target: 0, out: join(dir, 'prune'), fineTune: { epochs: 1 },
  });
  const reached = s.sweeps[0]!.picks.filter((p) => p.step !== null);
  assert.equal(s.finePrune!.length, reached.length);
  for (const row of s.finePrune!) {
    const g = s.goodnet!.find((r) => r.order === row.order && r.threshold === row.threshold)!;
    assert.deepEqual(row.before, { accuracy: g.repaired.accuracy, asr: g.repaired.asr });
    assert.ok(row.after!.accuracy >= 0 && row.after!.accuracy <= 1);
    const fp = await loadModel(join(dir, 'prune', row.model!.keras));
    const pick = s.sweeps[0]!.picks.find((p) => p.threshold === row.threshold)!;
    assert.deepEqual(inspectModel(fp.net).convs.find((c) => c.layer === 'conv_3')!.zeroChannels, [...pick.pruned].sort((a, b) => a - b));
  }
});

test('fineprune refuses an unpruned model without --prune-fraction', async () => {
  await assert.rejects(runFinePrune({ model, cleanValid: f('data/cl/valid.h5') }), /no channel of conv_3 is zero/);
  await assert.rejects(runFinePrune({ model, cleanValid: f('data/cl/valid.h5'), pruneFraction: 1.5 }), /--prune-fraction must be in \(0, 1\)/);
});
