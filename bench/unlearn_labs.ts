/**
 * Trigger unlearning (`goodnet unlearn`'s defaults) on lab BadNets, one after another, with
 * the excited-channel pruning's variants measured from the same unlearned model:
 *
 *   node dist/bench/bench/unlearn_labs.js OUT_DIR LAB_DIR...
 *
 * Per lab: the default run (`runTriggerUnlearning` with UNLEARN_DEFAULTS, as `goodnet unlearn
 * ... --clean-images 2500` runs it), its model saved as OUT_DIR/<lab>-unlearn.h5, measured on
 * data/cl/test.h5 and data/bd/bd_test.h5 (target 0); and, from the unlearned model before
 * pruning, the variants (no pruning; ranked on the original / the unlearned model; held-out
 * budgets 0.5, 1 and 2 points; RANKS=original for the first only), measured the same way. The test sets only measure: nothing
 * here chooses on them. One JSON line per result on stdout, the log on stderr.
 */
import { basename, join } from 'node:path';
import { loadavg } from 'node:os';
import { mkdirSync, appendFileSync, writeFileSync } from 'node:fs';
import { initBackend } from '../src/engine/backend.js';
import { loadModel, saveModel } from '../src/io/model.js';
import '../src/models/index.js';
import { runTriggerUnlearning } from '../src/defense/unlearn.js';
import { pruneExcited } from '../src/defense/excited.js';
import { measure } from '../src/defense/interface.js';

await initBackend('wasm');
const [out, ...labs] = process.argv.slice(2);
if (!out || labs.length === 0) throw new Error('usage: unlearn_labs.js OUT_DIR LAB_DIR...');
mkdirSync(out, { recursive: true });
const pct = (x: number) => Number((x * 100).toFixed(2));
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const row = (r: Record<string, unknown>) => {
  const line = JSON.stringify(r);
  console.log(line);
  appendFileSync(join(out, 'rows.jsonl'), `${line}\n`);
};

for (const lab of labs) {
  const name = basename(lab);
  const model = await loadModel(join(lab, 'models/bd_net.h5'));
  const m = { cleanTest: join(lab, 'data/cl/test.h5'), poisonedTest: join(lab, 'data/bd/bd_test.h5'), target: 0 };
  const before = await measure(model, model.net, m);
  row({ lab: name, variant: 'BadNet', accuracy: pct(before.accuracy), asr: pct(before.asr) });
  const loadStart = load();
  const run = await runTriggerUnlearning({ model, cleanValid: join(lab, 'data/cl/valid.h5'), cleanImages: 2500, log: (l) => console.error(`${name}: ${l}`) }, {}, {
    onUnlearned: async (net, held, triggers) => {
      // Kept for later looks at the pruning step (scratch only): the unlearned model and the stamped triggers.
      await saveModel({ ...model, net }, join(out, `${name}-unlearned-only.h5`), { overwrite: true });
      writeFileSync(join(out, `${name}-triggers.json`), JSON.stringify(triggers.map((t) => ({ mask: Array.from(t.mask), pattern: Array.from(t.pattern) }))));
      const u = await measure(model, net, m);
      row({ lab: name, variant: 'unlearned, no pruning', accuracy: pct(u.accuracy), asr: pct(u.asr), triggers: triggers.length });
      for (const rank of (process.env.RANKS ?? 'original,unlearned').split(',') as ('original' | 'unlearned')[]) {
        for (const maxDrop of [0.5, 1, 2]) {
          const p = await pruneExcited(net, held, triggers, { maxDrop }, rank === 'original' ? model.net : net);
          const a = await measure(model, p.net, m);
          p.net.dispose();
          const s = p.record.steps;
          const k = p.record.pruned.length;
          row({
            lab: name, variant: `prune rank ${rank}, drop ${maxDrop}`, accuracy: pct(a.accuracy), asr: pct(a.asr), pruned: k, excited: p.record.order.length,
            channels: p.record.channels, heldCurve: s.map((x) => pct(x.cleanAccuracy)), heldClean: [pct(s[0]!.cleanAccuracy), pct(s[k]!.cleanAccuracy)], heldStamped: [pct(s[0]!.stampedAccuracy), pct(s[k]!.stampedAccuracy)],
          });
        }
      }
    },
  });
  const file = join(out, `${name}-unlearn.h5`);
  await saveModel({ ...model, net: run.repaired! }, file, { overwrite: true });
  const after = await measure(model, run.repaired!, m);
  const d = run.details;
  row({
    lab: name, variant: 'default', accuracy: pct(after.accuracy), asr: pct(after.asr), drop: Number((100 * (before.accuracy - after.accuracy)).toFixed(2)),
    seconds: Math.round(run.seconds), load: `${loadStart} -> ${load()}`, rounds: d.rounds.length, stopped: d.stopped, triggers: d.rounds.at(-1)?.triggers,
    label0: d.rounds.map((r) => Number(r.labels[0]!.norm.toFixed(1))), pruned: d.pruning?.pruned.length, baseline: pct(d.baseline), saved: file,
  });
  run.repaired!.dispose();
  model.net.dispose();
}
