/**
 * The excited-channel pruning's budget rules, from the unlearned models `unlearn_labs.js`
 * kept (OUT_DIR/<lab>-unlearned-only.h5 and <lab>-triggers.json), each measured on the test
 * sets (measuring only):
 *
 *   node dist/bench/bench/excited_rules.js OUT_DIR RULES LAB_DIR[:i,j]...
 *
 * RULES: comma-separated; rN: within N points of the unlearned model's held-out accuracy;
 * tN: within N points of the original model's (the whole defense's budget); a trailing L
 * (r1L): keep the largest step within the budget instead of stopping at the first beyond it.
 * The held-out images are the ones `goodnet unlearn` holds out (seed 0, 2,500 clean images).
 */
import { basename, join } from 'node:path';
import { readFileSync, appendFileSync } from 'node:fs';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/io/model.js';
import '../src/models/index.js';
import { pruneExcited } from '../src/defense/excited.js';
import { loadCleanData, measure, splitSet } from '../src/defense/interface.js';
import { datasetAccuracy } from '../src/models/train.js';

await initBackend('wasm');
const [out, rules, ...labs] = process.argv.slice(2);
if (!out || !rules || labs.length === 0) throw new Error('usage: excited_rules.js OUT_DIR RULES LAB_DIR...');
const pct = (x: number) => Number((x * 100).toFixed(2));
for (const arg of labs) {
  // LAB_DIR[:i,j]: rank with the kept triggers i, j only (their order in <lab>-triggers.json).
  const [lab, pick] = arg.split(':') as [string, string | undefined];
  const name = basename(lab);
  const model = await loadModel(join(lab, 'models/bd_net.h5'));
  const unlearned = await loadModel(join(out, `${name}-unlearned-only.h5`));
  const triggers = (JSON.parse(readFileSync(join(out, `${name}-triggers.json`), 'utf8')) as { mask: number[]; pattern: number[] }[])
    .map((t) => ({ mask: Float32Array.from(t.mask), pattern: Float32Array.from(t.pattern) }))
    .filter((_, i) => pick === undefined || pick.split(',').map(Number).includes(i));
  const clean = await loadCleanData({ model, cleanValid: join(lab, 'data/cl/valid.h5'), cleanImages: 2500 });
  const [held] = splitSet(clean, 0.2, 'unlearn-holdout:0');
  const baseline = datasetAccuracy(model.net, held, 1);
  const start = datasetAccuracy(unlearned.net, held, 1);
  const m = { cleanTest: join(lab, 'data/cl/test.h5'), poisonedTest: join(lab, 'data/bd/bd_test.h5'), target: 0 };
  for (const rule of rules.split(',')) {
    const largest = rule.endsWith('L');
    const n = Number(rule.slice(1, largest ? -1 : undefined));
    // cN: within N of the unlearned model and within 2 of the original (goodnet unlearn's rule).
    const maxDrop = rule.startsWith('t') ? Math.max(0, 100 * (start - (baseline - n / 100)))
      : rule.startsWith('c') ? Math.max(0, Math.min(n, 100 * (start - baseline) + 2)) : n;
    const p = await pruneExcited(unlearned.net, held, triggers, { maxDrop, stop: largest ? 'largest' : 'first' }, model.net);
    const a = await measure(model, p.net, m);
    p.net.dispose();
    const k = p.record.pruned.length;
    const line = JSON.stringify({
      lab: name, rule, triggers: pick ?? 'all', maxDrop: Number(maxDrop.toFixed(2)), accuracy: pct(a.accuracy), asr: pct(a.asr), pruned: k, excited: p.record.order.length,
      heldBaseline: pct(baseline), heldUnlearned: pct(start), heldAfter: pct(p.record.steps[k]!.cleanAccuracy), heldCurve: p.record.steps.map((s) => pct(s.cleanAccuracy)),
    });
    console.log(line);
    appendFileSync(join(out, 'rules.jsonl'), `${line}\n`);
  }
}
