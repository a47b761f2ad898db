/**
 * One table for every defense on the same BadNet: no defense, pruning B'_X, GoodNet G_X,
 * fine-pruning FP_X, STRIP. Detectors (GoodNet, STRIP) count a flagged input as rejected:
 * a rejected clean input is not a correct answer, a rejected poisoned input is not an attack
 * success. DER is BackdoorBench's defense effectiveness rating.
 */
import type { StripResult } from '../detect/strip.js';
import type { PruneSummary } from './prune.js';
import type { PruneOrder } from './types.js';

export interface ComparisonRow {
  defense: string;
  kind: 'none' | 'prune' | 'goodnet' | 'fineprune' | 'strip';
  threshold?: number;
  /** Clean test accuracy (0..1). */
  accuracy: number;
  /** Attack success rate on poisoned test data (0..1). */
  asr: number;
  detectionRate?: number;
  falseAlarmRate?: number;
  /** Seconds the defense took (beyond the BadNet itself). */
  seconds?: number;
  /** BackdoorBench DER = [max(0, ΔASR) − max(0, ΔACC) + 1] / 2, in 0..1; 0.5 = no change. */
  der?: number;
  /** Images the numbers are measured on, when fewer than the whole test sets. */
  note?: string;
}

/** DER = [max(0, ASR_before − ASR_after) − max(0, ACC_before − ACC_after) + 1] / 2. */
export function der(before: { accuracy: number; asr: number }, after: { accuracy: number; asr: number }): number {
  return (Math.max(0, before.asr - after.asr) - Math.max(0, before.accuracy - after.accuracy) + 1) / 2;
}

/** STRIP's effect as a filter in front of B: needs B's labels on the rows STRIP scored. */
export interface StripAsDefense {
  result: StripResult;
  /** B's label and the true label of every row of the clean and poisoned test sets (full sets; STRIP's rows index them). */
  clean: { truth: ArrayLike<number>; bad: ArrayLike<number> };
  poisoned: { truth: ArrayLike<number>; bad: ArrayLike<number> };
}

function stripRow(s: StripAsDefense, target: number): ComparisonRow {
  const r = s.result;
  const t = r.threshold;
  const cl = r.cleanTest!;
  const po = r.poisonedTest!;
  let correct = 0;
  cl.rows.forEach((row, i) => {
    if (cl.entropies[i]! >= t && s.clean.bad[row] === s.clean.truth[row]) correct++;
  });
  let hits = 0;
  let counted = 0;
  po.rows.forEach((row, i) => {
    if (!po.labelsAreTarget && s.poisoned.truth[row] === target) return;
    counted++;
    if (po.entropies[i]! >= t && s.poisoned.bad[row] === target) hits++;
  });
  return {
    defense: `STRIP (N=${r.settings.n}, FRR ${(r.settings.frr * 100).toFixed(0)}%)`,
    kind: 'strip',
    accuracy: correct / cl.rows.length,
    asr: counted === 0 ? NaN : hits / counted,
    detectionRate: 1 - po.far,
    falseAlarmRate: cl.frr,
    seconds: r.timings.total,
    note: r.settings.limit !== undefined ? `${cl.rows.length} clean + ${po.rows.length} poisoned test images` : undefined,
  };
}

/** Rows for one pruning order (default asc, the defense). */
export function comparisonRows(p: PruneSummary, o: { order?: PruneOrder; strip?: StripAsDefense } = {}): ComparisonRow[] {
  const order = o.order ?? 'asc';
  const base = { accuracy: p.baseline.testAccuracy!, asr: p.baseline.testAsr! };
  const rows: ComparisonRow[] = [{ defense: 'no defense (BadNet B)', kind: 'none', ...base }];
  const sweep = p.sweeps.find((s) => s.order === order);
  const sweepSeconds = (sweep?.seconds ?? 0) + (p.timings.validationActivations ?? 0);
  const gn = (p.goodnet ?? []).filter((r) => r.order === order);
  for (const r of gn) rows.push({ defense: `pruning B'_${r.threshold}`, kind: 'prune', threshold: r.threshold, ...r.repaired, seconds: sweepSeconds });
  for (const r of gn) {
    rows.push({
      defense: `GoodNet G_${r.threshold}`, kind: 'goodnet', threshold: r.threshold, accuracy: r.goodnet.accuracy, asr: r.goodnet.asr,
      detectionRate: r.goodnet.detectionRate, falseAlarmRate: r.goodnet.falseAlarmRate, seconds: sweepSeconds,
    });
  }
  for (const f of (p.finePrune ?? []).filter((x) => x.order === order && x.after)) {
    rows.push({ defense: `fine-pruning FP_${f.threshold}`, kind: 'fineprune', threshold: f.threshold, ...f.after!, seconds: sweepSeconds + f.seconds });
  }
  if (o.strip) rows.push(stripRow(o.strip, p.target));
  for (const r of rows) if (r.kind !== 'none') r.der = der(base, r);
  return rows;
}
