/** ONNX in and out: PyTorch fixtures against onnxruntime's reference outputs, weight round trips, bad files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/engine/backend.js';
import { readOnnx } from '../src/io/onnx.js';
import { ROOT } from './helpers.js';

const FIX = join(ROOT, 'test/fixtures/onnx');
const N = 16, H = 16, W = 16, C = 3;

function fixtureInputs(): tf.Tensor4D {
  const buf = readFileSync(join(FIX, 'inputs.bin'));
  return tf.tensor4d(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice(), [N, H, W, C]);
}

const fixtures = readdirSync(FIX).filter((f) => f.endsWith('.onnx')).sort();

test('ONNX fixtures from PyTorch: top-1 equals onnxruntime on every image, probabilities within 1e-4', async () => {
  await initBackend('wasm');
  assert.ok(fixtures.length >= 9, `fixtures: ${fixtures.join(', ')}`);
  const x = fixtureInputs();
  for (const f of fixtures) {
    const ref = JSON.parse(readFileSync(join(FIX, f.replace(/\.onnx$/, '.json')), 'utf8')) as { probs: number[][] };
    const m = await readOnnx(join(FIX, f));
    const got = tf.tidy(() => m.net.predict(x) as tf.Tensor2D).arraySync();
    let worst = 0;
    for (let i = 0; i < N; i++) {
      const r = ref.probs[i]!, g = got[i]!;
      assert.equal(g.indexOf(Math.max(...g)), r.indexOf(Math.max(...r)), `${f} image ${i}: top-1`);
      for (let j = 0; j < r.length; j++) worst = Math.max(worst, Math.abs(g[j]! - r[j]!));
    }
    assert.ok(worst <= 1e-4, `${f}: max |p - p_ref| = ${worst}`);
    console.log(f, 'max diff', worst, m.net.layers.map((l) => l.getClassName()).join(' '));
    m.net.dispose();
  }
  x.dispose();
});
