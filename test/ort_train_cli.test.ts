/** --train-engine ort on goodnet attack and fineprune (a tiny MNIST BadNet), and its refusals. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { fineTune } from '../src/defense/fineprune.js';
import { loadModel } from '../src/io/model.js';
import { inspectModel } from '../src/models/inspect.js';
import { GoodnetError } from '../src/errors.js';
import { ROOT, assertBadInput, tempDir } from './helpers.js';

await initBackend('wasm');
const BIN = join(ROOT, 'bin', 'goodnet.js');
const { dir, cleanup } = tempDir('goodnet-ortrain-');
after(cleanup);
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('goodnet attack trains on the ort engine by default (--train-engine auto; attack.json and the log say so); fineprune too, keeping the pruned channels at zero', () => {
  const lab = join(dir, 'lab');
  const a = run(['attack', '-o', lab, '--dataset', 'mnist', '--train-size', '1200', '--valid-size', '300', '--test-size', '300', '-e', '2', '--batch-size', '32']);
  assert.equal(a.code, 0, a.err);
  assert.match(a.err, /training on onnxruntime \(ort engine\)/);
  const summary = JSON.parse(readFileSync(join(lab, 'attack.json'), 'utf8')) as { training: { engine?: string; history: { loss: number }[] }; results: { cleanTestAccuracy: number; asrTest: number } };
  assert.equal(summary.training.engine, 'ort');
  assert.ok(summary.training.history[1]!.loss < summary.training.history[0]!.loss, 'the loss falls');
  assert.ok(summary.results.cleanTestAccuracy > 0.5, `clean accuracy ${summary.results.cleanTestAccuracy}`);
  const fp = join(dir, 'fp.h5');
  const f = run(['fineprune', '-m', join(lab, 'models', 'bd_net.h5'), '--prune-fraction', '0.5', '--clean-valid', join(lab, 'data', 'cl', 'valid.h5'),
    '-e', '1', '-o', fp, '--json', join(dir, 'fp.json')]);
  assert.equal(f.code, 0, f.err);
  const r = JSON.parse(readFileSync(join(dir, 'fp.json'), 'utf8')) as { pruned: number[]; conv: string; fineTune: { engine: string } };
  assert.equal(r.pruned.length, 30);
  assert.equal(r.fineTune.engine, 'ort');
  return loadModel(fp).then((m) => {
    assert.deepEqual(inspectModel(m.net).convs.find((c) => c.layer === r.conv)!.zeroChannels, [...r.pruned].sort((x, y) => x - y));
  });
});

test('--train-engine: an unknown engine is a usage error before any work', () => {
  const out = join(dir, 'never');
  assertBadInput(run(['attack', '-o', out, '--train-engine', 'torch']), /--train-engine/);
  assert.equal(existsSync(out), false);
});

test('fine-tuning with the ort engine refuses a net it cannot train before any work', async () => {
  const input = tfl.input({ shape: [8, 8, 1] });
  let x = tfl.layers.conv2d({ name: 'c1', filters: 3, kernelSize: 3, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.gaussianNoise({ stddev: 0.1, name: 'noise' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 2, activation: 'softmax' }).apply(x) as tfl.SymbolicTensor });
  const clean = { images: new Float32Array(10 * 64), labels: new Int32Array(10), n: 10, shape: [8, 8, 1] as [number, number, number] };
  let epochs = 0;
  await assert.rejects(fineTune(net, 'c1', [], clean, { epochs: 1, trainEngine: 'ort', onEpoch: () => { epochs++; } }),
    (e: unknown) => e instanceof GoodnetError && /--train-engine ort: layer 'noise' \(GaussianNoise\)/.test(e.message));
  assert.equal(epochs, 0);
});

test('a model with a dilated conv (tfjs has no gradient for it) fine-prunes on the ort engine by default; --train-engine tfjs refuses it with one line, before any work', async () => {
  const { writeCsawData } = await import('../src/attack/csaw_layout.js');
  const data = join(dir, 'mobile16.h5');
  const n = 20;
  await writeCsawData(data, Uint8Array.from({ length: n * 16 * 16 * 3 }, (_, i) => (i * 37) & 255), Int32Array.from({ length: n }, (_, i) => i % 4), n, 16, 16, 3);
  const out = join(dir, 'fp_mobile.onnx');
  const model = join(ROOT, 'test', 'fixtures', 'onnx', 'mobile_op17.onnx');
  const refused = run(['fineprune', '-m', model, '--prune-fraction', '0.5', '--clean-valid', data, '-e', '1', '-o', out, '--train-engine', 'tfjs']);
  assertBadInput(refused, /cannot fine-tune on tfjs-wasm: layer 'dil' \(Conv2D\) is a dilated convolution, which tfjs has no gradient for/);
  assert.equal(existsSync(out), false);
  const r = run(['fineprune', '-m', model, '--prune-fraction', '0.5', '--clean-valid', data, '-e', '1', '-o', out, '--json', join(dir, 'fpm.json')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /fine-tuning on onnxruntime \(ort engine\)/);
  assert.equal((JSON.parse(readFileSync(join(dir, 'fpm.json'), 'utf8')) as { fineTune: { engine: string } }).fineTune.engine, 'ort');
  assert.ok(existsSync(out));
});
