/**
 * ANP and CLP on one lab BadNet, several pruning rules from one mask optimisation, every
 * result measured on the test sets (measuring only: nothing here chooses on them).
 *
 *   node dist/bench/bench/anp_lab.js LAB_DIR ITERATIONS [OUT_JSON]
 *
 * ANP: masks from `runAnp` with --max-drop 2 (the masks see 80% of the 2,500 clean images,
 * the other 20% measure the drop); from the same masks also the threshold-0.2 rule.
 * CLP: u = 3 and the sweep 1..3 with --max-drop 2.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/io/model.js';
import '../src/models/index.js';
import { runAnp, anpPrune, type AnpDetails } from '../src/defense/anp.js';
import { runClp, type ClpDetails } from '../src/defense/clp.js';
import { runRnp, type RnpDetails } from '../src/defense/rnp.js';
import { measure } from '../src/defense/interface.js';

await initBackend('wasm');
const [lab, iterArg, outJson] = process.argv.slice(2);
if (!lab) throw new Error('usage: anp_lab.js LAB_DIR ITERATIONS [OUT_JSON]');
const iterations = Number(iterArg ?? 2000);
const model = await loadModel(join(lab, 'models/bd_net.h5'));
const m = { cleanTest: join(lab, 'data/cl/test.h5'), poisonedTest: join(lab, 'data/bd/bd_test.h5'), target: 0 };
const input = { model, cleanValid: join(lab, 'data/cl/valid.h5'), cleanImages: 2500, log: (l: string) => console.error(l) };
const rows: Record<string, unknown>[] = [];
const row = (r: Record<string, unknown>) => { rows.push(r); console.log(JSON.stringify(r)); };
const pct = (x: number) => Number((x * 100).toFixed(2));
const before = await measure(model, model.net, m);
row({ lab, defense: 'none', accuracy: pct(before.accuracy), asr: pct(before.asr) });

const which = process.env.ONLY ?? 'clp,anp';
if (which.includes('clp')) {
  for (const u of [[3], [1, 1.5, 2, 2.5, 3]]) {
    const r = await runClp(input, { u, maxDrop: 2 });
    const after = await measure(model, r.repaired!, m);
    const d = r.details as ClpDetails;
    const c = d.candidates.find((x) => x.u === d.chosen)!;
    row({ lab, defense: `CLP u=${u.join(',')}`, chosenU: d.chosen, pruned: c.pruned, accuracy: pct(after.accuracy), asr: pct(after.asr), seconds: Math.round(r.seconds), candidates: d.candidates.map((x) => [x.u, x.pruned, x.validAccuracy]) });
    r.repaired!.dispose();
  }
}
async function masksReport(name: string, d: AnpDetails | RnpDetails, extra: Record<string, unknown>): Promise<void> {
  const zeros = d.masks.filter((c) => c.mask === 0).length;
  row({ lab, defense: `${name} max-drop 2 (held-out ${d.accuracyImages})`, pruned: d.pruned.length, ...extra, maskZeros: zeros, below02: d.masks.filter((c) => c.mask < 0.2).length, curve: d.curve?.map(pct) });
  for (const t of [0.05, 0.2, 0.5]) {
    const chosen = d.masks.filter((c) => c.mask < t).sort((a, b) => a.mask - b.mask);
    const net = await anpPrune(model.net, d.units, chosen);
    const a = await measure(model, net, m);
    net.dispose();
    row({ lab, defense: `${name} mask < ${t} (same masks)`, pruned: chosen.length, accuracy: pct(a.accuracy), asr: pct(a.asr) });
  }
  // Measuring only: test accuracy and ASR after pruning the k smallest masks.
  const sorted = [...d.masks].sort((a, b) => a.mask - b.mask);
  const ks = [1, 2, 3, 5, 8, 12, 20, 30].filter((k) => k <= sorted.length);
  const curve: unknown[] = [];
  for (const k of ks) {
    const net = await anpPrune(model.net, d.units, sorted.slice(0, k));
    const a = await measure(model, net, m);
    net.dispose();
    curve.push([k, pct(a.accuracy), pct(a.asr), sorted[k - 1]!.conv, sorted[k - 1]!.channel, Number(sorted[k - 1]!.mask.toFixed(3))]);
  }
  row({ lab, defense: `${name} k smallest (measuring only)`, curve });
}
if (which.includes('anp')) {
  const r = await runAnp(input, { iterations, maxDrop: 2 });
  const d = r.details as AnpDetails;
  const after = await measure(model, r.repaired!, m);
  r.repaired!.dispose();
  await masksReport('ANP', d, { iterations, accuracy: pct(after.accuracy), asr: pct(after.asr), seconds: Math.round(r.seconds), optimiseSeconds: Math.round(d.optimiseSeconds) });
}
if (which.includes('rnp')) {
  const r = await runRnp(input, { maxDrop: 2 });
  const d = r.details as RnpDetails;
  const after = await measure(model, r.repaired!, m);
  r.repaired!.dispose();
  await masksReport('RNP', d, { accuracy: pct(after.accuracy), asr: pct(after.asr), seconds: Math.round(r.seconds), unlearn: d.unlearnAccuracy.map(pct), recover: d.recoverAccuracy.map(pct) });
}
if (outJson) writeFileSync(outJson, JSON.stringify(rows, null, 1));
