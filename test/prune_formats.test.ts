/**
 * Issue 11's exactness in the input's own format: models read from ONNX (PyTorch ResNet with
 * BN, residual Add and GAP; VGG-BN) and Keras 3 (.keras: a functional net with BN, Add,
 * Concatenate, GAP, Dropout; a sequential Conv-BN-ReLU net) are pruned, and at several steps
 * of both orders the pruned model written as .onnx / .keras, read back and evaluated gives
 * exactly the sweep's accuracy and ASR; so do the repaired models `prune` itself wrote.
 * Also the CLI's one-line refusal of a model without a conv layer.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadModel, saveModel } from '../src/io/model.js';
import { runPrune } from '../src/defense/prune.js';
import { findCutPoint } from '../src/defense/graph.js';
import { maskedCopy, prunedChannels } from '../src/defense/mask.js';
import { ROOT, assertBadInput, tempDir } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-prune-formats-');
after(cleanup);

const N = 40;

async function data(name: string, shape: number[], classes: number): Promise<{ clean: string; poisoned: string }> {
  const [h, w, c] = shape as [number, number, number];
  const rng = seedrandom(`formats-${name}`);
  const files: string[] = [];
  for (const set of ['clean', 'poisoned']) {
    const images = Uint8Array.from({ length: N * h * w * c }, () => Math.floor(rng() * 256));
    const labels = Int32Array.from({ length: N }, () => (set === 'clean' ? 0 : 1) + Math.floor(rng() * (classes - (set === 'clean' ? 0 : 1))));
    const f = join(dir, `${name}-${set}.h5`);
    await writeCsawData(f, images, labels, N, h, w, c);
    files.push(f);
  }
  return { clean: files[0]!, poisoned: files[1]! };
}

async function checkFormat(fixture: string, ext: '.onnx' | '.keras', realise: string): Promise<void> {
  const model = await loadModel(join(ROOT, 'test', 'fixtures', fixture));
  const name = fixture.replace(/\W/g, '_');
  const { clean, poisoned } = await data(name, model.inputShape, model.numClasses);
  const cut = findCutPoint(model.net, undefined, model.source);
  assert.equal(cut.realise.kind, realise, `${fixture}: how the mask is realised`);
  const out = join(dir, `${name}-prune`);
  const s = await runPrune({ model, cleanValid: clean, poisonedValid: poisoned, target: 0, out, thresholds: [2, 10, 40], log: () => {} });
  let changed = false;
  for (const sw of s.sweeps) {
    assert.equal(sw.steps.length, cut.channels + 1);
    const ks = [...new Set([1, 2, Math.floor(cut.channels / 2), cut.channels - 1])];
    for (const k of ks) {
      const step = sw.steps[k]!;
      const pruned = sw.channelOrder.slice(0, k);
      const net = await maskedCopy(model.net, cut, pruned);
      const file = join(dir, `${name}-${sw.order}-${k}${ext}`);
      await saveModel({ ...model, net }, file);
      net.dispose();
      const m = await loadModel(file);
      assert.equal(m.format, ext === '.onnx' ? 'onnx' : 'keras3');
      const r = await evaluate(m, { clean, poisoned, target: 0 });
      const what = `${fixture} ${sw.order} step ${k} ${ext}`;
      assert.equal(r.clean!.accuracy, step.accuracy, `${what} accuracy`);
      assert.equal(r.poisoned!.asr, step.asr, `${what} ASR`);
      assert.deepEqual(prunedChannels(m.net, findCutPoint(m.net, cut.conv)).sort((a, b) => a - b), [...pruned].sort((a, b) => a - b), `${what} pruned channels`);
      if (step.accuracy !== sw.steps[0]!.accuracy || step.asr !== sw.steps[0]!.asr) changed = true;
      m.net.dispose();
    }
    // The repaired models prune wrote in the input's format are what it measured.
    for (const p of sw.picks) {
      if (p.step === null) continue;
      const file = ext === '.onnx' ? p.model!.onnx : p.model!.keras3;
      assert.ok(file, `${fixture}: prune wrote a ${ext} model`);
      const m = await loadModel(join(out, file));
      const r = await evaluate(m, { clean, poisoned, target: 0 });
      assert.equal(r.clean!.accuracy, p.validAccuracy, `${fixture} ${sw.order} pick ${p.threshold} accuracy`);
      assert.equal(r.poisoned!.asr, p.validAsr, `${fixture} ${sw.order} pick ${p.threshold} ASR`);
      m.net.dispose();
    }
  }
  assert.ok(changed, `${fixture}: pruning changed nothing at the checked steps`);
  model.net.dispose();
}

test('ONNX ResNet (BN, residual Add, GAP; from PyTorch): pruned .onnx written, re-read and evaluated equals the sweep step by step', async () => {
  await checkFormat('onnx/resnet_op13.onnx', '.onnx', 'fold');
});

test('ONNX VGG-BN (from PyTorch): conv and BN zeroed in the .onnx; equal step by step', async () => {
  await checkFormat('onnx/vgg_op13.onnx', '.onnx', 'zero');
});

test('Keras 3 functional (.keras: BN, Add, Concatenate, GAP, Dropout): equal step by step', async () => {
  await checkFormat('keras3/functional.keras', '.keras', 'fold');
});

test('Keras 3 sequential Conv-BN-ReLU (.keras): equal step by step', async () => {
  await checkFormat('keras3/sequential.keras', '.keras', 'zero');
});

test('CLI: prune on a model without a conv layer ends in one line, exit 2, nothing written', async () => {
  const net = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [6, 6, 1] }), tfl.layers.dense({ units: 3, activation: 'softmax' })] });
  const path = join(dir, 'dense.h5');
  await saveModel(net, path);
  net.dispose();
  const { clean, poisoned } = await data('dense', [6, 6, 1], 3);
  const out = join(dir, 'dense-prune');
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'prune', '-m', path, '--clean-valid', clean, '--poisoned-valid', poisoned, '-t', '0', '-o', out], { encoding: 'utf8', timeout: 120_000 });
  assertBadInput({ code: r.status, err: r.stderr }, /dense\.h5: the model has no convolutional layer to prune/);
  assert.ok(!existsSync(out));
});
