/**
 * Pruning what reversed triggers excite (src/defense/excited.ts) on the tiny BadNet built
 * here: it reads only clean held-out images and triggers, ranks channels by how much the
 * trigger excites them, stops at the first step beyond its clean budget, and the model it
 * returns computes what its record says.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { pruneExcited, excitationScores } from '../src/defense/excited.js';
import { findCutPoint } from '../src/defense/graph.js';
import { prunedChannels } from '../src/defense/mask.js';
import { stampWith } from '../src/defense/nc.js';
import { datasetAccuracy, type TrainingSet } from '../src/models/train.js';
import { inTinyZone, sameWeights, trainTinyBadNet, TINY_H, tinyImages } from './helpers.js';
import { cloneNet } from '../src/defense/graph.js';

await initBackend('wasm');
const H = TINY_H;
let badnet: tfl.LayersModel;
let held: TrainingSet;
/** The real trigger, standing in for a reversed one: the white 3x3 corner. */
const mask = Float32Array.from({ length: H * H }, (_, i) => (inTinyZone(Math.floor(i / H), i % H) ? 1 : 0));
const trigger = { mask, pattern: new Float32Array(H * H).fill(1) };
/** A trigger that changes nothing (mask 0). */
const nothing = { mask: new Float32Array(H * H), pattern: new Float32Array(H * H).fill(1) };

before(async () => {
  const clean = tinyImages(400, 'train-clean', false);
  const bad = tinyImages(60, 'train-bad', true);
  badnet = await trainTinyBadNet(clean, { x: bad.x, n: 60 }, H, 0);
  const h = tinyImages(200, 'excited-held', false); // clean images only, pixels as the model takes them (0..1)
  held = { images: Float32Array.from(h.x, (v) => v / 255), labels: h.y, n: 200, shape: [H, H, 1] };
});

test('scores: a trigger that changes nothing excites nothing; the real trigger excites some channel', () => {
  const cut = findCutPoint(badnet);
  assert.ok(excitationScores(badnet, cut, held, [nothing]).every((s) => Math.abs(s) < 1e-6));
  const s = excitationScores(badnet, cut, held, [trigger]);
  assert.equal(s.length, cut.channels);
  assert.ok(Math.max(...s) > 0, `scores ${Array.from(s).join(', ')}`);
  // The score is the largest over the triggers.
  const n = excitationScores(badnet, cut, held, [nothing]);
  const both = excitationScores(badnet, cut, held, [nothing, trigger]);
  assert.deepEqual(Array.from(both), Array.from(s, (v, c) => Math.max(v, n[c]!)));
});

test('pruning stops at the first step beyond its held-out clean budget, and the model it returns evaluates like its record', async () => {
  const copy = await cloneNet(badnet);
  for (const maxDrop of [0, 5, 100]) {
    const { net, record } = await pruneExcited(badnet, held, [trigger], { maxDrop, maxShare: 1 });
    const k = record.pruned.length;
    const s = record.steps;
    assert.equal(s[0]!.pruned, 0);
    assert.equal(record.baseline, datasetAccuracy(badnet, held, 1));
    // Highest score first, positive scores only; the pruned channels are a prefix of that order.
    assert.ok(record.scores.every((v, i) => v > 0 && (i === 0 || v <= record.scores[i - 1]!)));
    assert.deepEqual(record.pruned, record.order.slice(0, k));
    for (let j = 1; j <= k; j++) assert.ok(s[j]!.cleanAccuracy >= record.baseline - maxDrop / 100 - 1e-9, `step ${j} within ${maxDrop}`);
    if (k < record.order.length) assert.ok(s[k + 1]!.cleanAccuracy < record.baseline - maxDrop / 100 - 1e-9, 'stopped only by the budget');
    if (maxDrop === 100) assert.equal(k, record.order.length, 'an unlimited budget prunes every excited channel');
    // The returned model: those channels zeroed, and its held-out accuracies are the record's.
    assert.deepEqual(prunedChannels(net, findCutPoint(net)).sort(), [...record.pruned].sort());
    assert.equal(datasetAccuracy(net, held, 1), s[k]!.cleanAccuracy);
    assert.equal(datasetAccuracy(net, stampWith(held, [trigger], 1, 'held-out').set, 1), s[k]!.stampedAccuracy);
    net.dispose();
  }
  // 'largest': every step tried, the most channels within the budget kept.
  for (const maxDrop of [0, 5]) {
    const { net, record } = await pruneExcited(badnet, held, [trigger], { maxDrop, maxShare: 1, stop: 'largest' });
    const within = record.steps.filter((x) => x.cleanAccuracy >= record.baseline - maxDrop / 100 - 1e-9).map((x) => x.pruned);
    assert.equal(record.steps.length, record.order.length + 1);
    assert.equal(record.pruned.length, Math.max(...within));
    assert.equal(datasetAccuracy(net, held, 1), record.steps[record.pruned.length]!.cleanAccuracy);
    net.dispose();
  }
  assert.ok(sameWeights(badnet, copy), 'the model given is not changed');
  copy.dispose();
});

test('pruning the channels the real trigger excites raises the stamped images\' accuracy on the tiny BadNet', async () => {
  const { net, record } = await pruneExcited(badnet, held, [trigger], { maxDrop: 100, maxShare: 1 });
  const s = record.steps;
  assert.ok(s.at(-1)!.stampedAccuracy > s[0]!.stampedAccuracy, `stamped ${s.map((x) => x.stampedAccuracy).join(' ')}`);
  net.dispose();
  await assert.rejects(pruneExcited(badnet, held, [], {}), /no triggers/);
  await assert.rejects(pruneExcited(badnet, held, [trigger], { maxShare: 0 }), /share must be in/);
  await assert.rejects(pruneExcited(badnet, held, [trigger], { stop: 'all' as never }), /stop must be/);
});
