/** The sweep's all-steps metrics equal the per-step accuracy and ASR they replace. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import { accuracy, attackSuccessRate, stepAccuracies, stepAttackSuccessRates } from '../src/eval/metrics.js';

test('stepAccuracies and stepAttackSuccessRates equal accuracy and attackSuccessRate step by step (unlabelled images, all-target files)', () => {
  const rng = seedrandom('metrics');
  const n = 97;
  const steps = 5;
  const labels = Int32Array.from({ length: n * steps }, () => Math.floor(rng() * 4));
  const truths = [
    Int32Array.from({ length: n }, () => Math.floor(rng() * 5) - 1), // some -1 (unlabelled)
    new Int32Array(n).fill(2), // every label is the target: counted whole
    new Int32Array(0).fill(0),
  ];
  for (const truth of truths) {
    const m = truth.length;
    const l = labels.subarray(0, m * steps);
    const acc = stepAccuracies(l, truth, steps);
    const asr = stepAttackSuccessRates(l, truth, steps, 2);
    for (let k = 0; k < steps; k++) {
      const p = l.subarray(k * m, (k + 1) * m);
      assert.deepEqual(acc[k], accuracy(p, truth).value, `accuracy step ${k}`);
      assert.deepEqual(asr[k], attackSuccessRate(p, truth, 2).value, `ASR step ${k}`);
    }
    if (m > 0) assert.ok(acc.some((a) => a > 0) && asr.some((a) => a > 0), 'non-trivial');
  }
});
