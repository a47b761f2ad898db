/**
 * STRIP on the defense contract (src/defense/interface.ts), as a detector: `run` calibrates
 * the entropy threshold on clean data only (no repaired model, no model-level verdict:
 * STRIP judges inputs, not models); `measure` puts the calibrated detector in front of the
 * model on the test sets (a flagged input is rejected) and adds the full STRIP result
 * (entropies, FRR, FAR) to the run's details, so the comparison table, the report and the
 * demo list STRIP beside the model-repairing defenses. `goodnet strip` (runStrip) is unchanged.
 */
import seedrandom from 'seedrandom';
import { checkFits } from '../eval/predict.js';
import { checkLabels, openDataset, type Batch, type ImageDataset } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { permutation } from '../models/train.js';
import {
  registerDefense, type DefenseInput, type DefenseRow, type DefenseRun, type Measurement, type MeasureOptions, type ReportSection,
} from '../defense/interface.js';
import { derOf } from '../defense/interface.js';
import {
  calibrateStrip, limitRows, stripEntropies, summarize, STRIP_DEFAULTS, type StripDetector, type StripMethod, type StripResult,
} from './strip.js';
import { percent as pct } from '../io/table.js';

export interface StripDefenseOptions {
  /** Backgrounds blended with each input. */
  n: number;
  /** Target false rejection rate on clean calibration images. */
  frr: number;
  method: StripMethod;
  /** Share of the clean data used for calibration (the rest are backgrounds). */
  heldOut: number;
  /** Measuring only: at most this many images of each test set (seeded); default all. */
  limit?: number;
}

export const STRIP_DEFENSE_DEFAULTS: StripDefenseOptions = {
  n: STRIP_DEFAULTS.n, frr: STRIP_DEFAULTS.frr, method: STRIP_DEFAULTS.method, heldOut: STRIP_DEFAULTS.heldOut,
};

export interface StripDefenseDetails {
  settings: StripDefenseOptions;
  threshold: number;
  calibration: { images: number; backgrounds: number; flagged: number; frr: number; seconds: number };
  /** Added by `measure`: the whole STRIP result on the test sets (as `goodnet strip` writes it). */
  result?: StripResult;
}

type StripRun = DefenseRun<StripDefenseDetails> & { detector?: StripDetector };

/** The rows `rows` (ascending) of `ds` as a data set of their own. */
export function rowSubset(ds: ImageDataset, rows: Int32Array): ImageDataset {
  const labels = Int32Array.from(rows, (r) => ds.labels[r]!);
  return {
    source: ds.source, length: rows.length, imageShape: ds.imageShape, labels, kind: ds.kind, layout: ds.layout,
    name: (i) => ds.name(rows[i]!),
    async *batches(batchSize: number): AsyncIterable<Batch> {
      const per = ds.imageShape[0] * ds.imageShape[1] * ds.imageShape[2];
      let k = 0;
      let x = new Float32Array(batchSize * per);
      let y = new Int32Array(batchSize);
      let n = 0;
      let start = 0;
      for await (const b of ds.batches(256)) {
        for (let i = 0; i < b.n && k < rows.length; i++) {
          if (b.start + i !== rows[k]) continue;
          x.set(b.x.subarray(i * per, (i + 1) * per), n * per);
          y[n++] = b.y[i]!;
          k++;
          if (n === batchSize) {
            yield { x, y, n, start };
            start += n;
            x = new Float32Array(batchSize * per);
            y = new Int32Array(batchSize);
            n = 0;
          }
        }
        if (k >= rows.length) break;
      }
      if (n > 0) yield { x: x.subarray(0, n * per), y: y.subarray(0, n), n, start };
    },
    close: () => ds.close(),
  };
}

async function runStripDefense(input: DefenseInput, options: Partial<StripDefenseOptions> = {}): Promise<StripRun> {
  const o: StripDefenseOptions = { ...STRIP_DEFENSE_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  const t0 = performance.now();
  // Raw pixels: STRIP blends in the data's own scale and applies the preprocessing after.
  const all = await openDataset(input.cleanValid, { scale: 1, layout: input.layout, expect: input.model.inputShape });
  let ds: ImageDataset = all;
  try {
    checkFits(input.model, all);
    checkLabels(all, input.model.numClasses);
    const limit = input.cleanImages;
    if (limit !== undefined && limit < all.length) {
      ds = rowSubset(all, permutation(all.length, seedrandom(`clean-subset:${input.seed ?? 0}`)).subarray(0, limit).sort());
    }
    const det = await calibrateStrip(input.model, ds, {
      n: o.n, frr: o.frr, method: o.method, heldOut: o.heldOut, seed: input.seed ?? STRIP_DEFAULTS.seed,
      scale: input.scale, mean: input.mean, std: input.std, layout: input.layout,
      onProgress: (d, t) => input.onProgress?.('STRIP calibration', d, t),
    });
    return {
      defense: 'strip', detector: det, cleanImages: ds.length, seconds: (performance.now() - t0) / 1000,
      details: {
        settings: o, threshold: det.threshold,
        calibration: { images: det.calibration.images, backgrounds: det.backgrounds.count, flagged: det.calibration.flagged, frr: det.calibration.frr, seconds: det.seconds },
      },
    };
  } finally {
    all.close();
  }
}

/** The calibrated detector in front of the model on the test sets; the STRIP result goes into `run.details.result`. */
async function measureStrip(run: StripRun, model: LoadedModel, m: MeasureOptions): Promise<Measurement> {
  const det = run.detector;
  if (!det) throw new Error('STRIP: measure needs the run that calibrated the detector');
  const o = run.details.settings;
  const t0 = performance.now();
  const open = (p: string) => openDataset(p, { scale: 1, layout: m.layout, expect: model.inputShape });
  const cl = await open(m.cleanTest);
  let clean;
  let cleanTotal: number;
  try {
    cleanTotal = cl.length;
    const rows = limitRows(Int32Array.from({ length: cl.length }, (_, i) => i), o.limit, det.seed, 'clean-test');
    clean = await stripEntropies(model, det, cl, { stream: 'clean-test', rows });
  } finally {
    cl.close();
  }
  const po = await open(m.poisonedTest);
  let pois;
  let poisTotal: number;
  let labelsAreTarget: boolean;
  try {
    checkLabels(po, model.numClasses);
    poisTotal = po.length;
    const trojaned: number[] = [];
    for (let i = 0; i < po.length; i++) if (po.labels[i] !== m.target) trojaned.push(i);
    labelsAreTarget = trojaned.length === 0;
    const eligible = labelsAreTarget ? Int32Array.from({ length: po.length }, (_, i) => i) : Int32Array.from(trojaned);
    pois = await stripEntropies(model, det, po, { stream: 'poisoned-test', rows: limitRows(eligible, o.limit, det.seed, 'poisoned-test') });
  } finally {
    po.close();
  }
  const t = det.threshold;
  let correct = 0;
  let cleanFlagged = 0;
  for (let i = 0; i < clean.entropies.length; i++) {
    if (clean.entropies[i]! < t) cleanFlagged++;
    else if (clean.predicted[i] === clean.truth[i]) correct++;
  }
  let hits = 0;
  let poisFlagged = 0;
  for (let i = 0; i < pois.entropies.length; i++) {
    if (pois.entropies[i]! < t) poisFlagged++;
    else if (pois.predicted[i] === m.target) hits++;
  }
  const nc = clean.entropies.length;
  const np = pois.entropies.length;
  const measured = (performance.now() - t0) / 1000;
  run.details.result = {
    model: model.source,
    settings: {
      n: det.n, frr: det.frr, method: det.method, seed: det.seed, heldOut: det.heldOut, superimpose: det.superimpose, pixelMax: det.pixelMax,
      scale: det.scale, ...(det.mean ? { mean: det.mean } : {}), ...(det.std ? { std: det.std } : {}), batchSize: det.batchSize,
      ...(o.limit !== undefined ? { limit: o.limit } : {}), entropyUnit: 'bits',
    },
    threshold: t,
    calibration: {
      source: det.calibration.source, backgrounds: det.backgrounds.count, ...summarize(det.calibration.entropies),
      flagged: det.calibration.flagged, frr: det.calibration.frr, entropies: Array.from(det.calibration.entropies),
    },
    cleanTest: {
      source: clean.source, total: cleanTotal, ...summarize(clean.entropies), flagged: cleanFlagged, frr: cleanFlagged / nc,
      rows: Array.from(clean.rows), entropies: Array.from(clean.entropies),
    },
    poisonedTest: {
      source: pois.source, total: poisTotal, target: m.target, labelsAreTarget, ...summarize(pois.entropies),
      accepted: np - poisFlagged, far: (np - poisFlagged) / np, rows: Array.from(pois.rows), entropies: Array.from(pois.entropies),
    },
    timings: { calibration: det.seconds, cleanTest: clean.seconds, poisonedTest: pois.seconds, total: det.seconds + measured },
    forwardPasses: det.forwardPasses + clean.forwardPasses + pois.forwardPasses,
    imagesPerSecond: (det.forwardPasses + clean.forwardPasses + pois.forwardPasses) / (det.seconds + measured),
  };
  return {
    accuracy: correct / nc, asr: np === 0 ? NaN : hits / np, detectionRate: poisFlagged / np, falseAlarmRate: cleanFlagged / nc,
    images: { clean: nc, poisoned: np },
  };
}


export const stripDefense = registerDefense<StripDefenseOptions, StripDefenseDetails>({
  name: 'strip',
  title: 'STRIP (Gao et al. 2019)',
  summary: 'input-level detector: flags inputs whose predictions stay confident (low entropy) when blended with clean images',
  kind: 'detect',
  defaults: STRIP_DEFENSE_DEFAULTS,
  run: runStripDefense,
  measure: (run, model, m) => measureStrip(run as StripRun, model, m),
  rows: (run, m): DefenseRow[] => {
    if (!m.after) return [];
    const r = run.details.result;
    const s = run.details.settings;
    const { images, ...after } = m.after;
    const limited = images && r && (images.clean < r.cleanTest!.total || images.poisoned < r.poisonedTest!.total);
    return [{
      defense: `STRIP (detector; N=${s.n}, FRR ${(s.frr * 100).toFixed(0)}%)`, ...after, der: derOf(m.before, m.after),
      cleanImages: run.cleanImages, seconds: run.seconds + (r ? r.timings.total - r.timings.calibration : 0),
      ...(limited ? { note: `${images!.clean} clean + ${images!.poisoned} poisoned test images` } : {}),
    }];
  },
  section: (run, m): ReportSection => {
    const d = run.details;
    const r = d.result;
    return {
      title: 'STRIP',
      text: [
        `Each input blended with ${d.settings.n} of ${d.calibration.backgrounds} clean background images; inputs whose mean prediction entropy is ` +
          `below ${d.threshold.toFixed(4)} bits (set on ${d.calibration.images} clean calibration images for a ${pct(d.settings.frr)} false-rejection rate) ` +
          `are flagged. No repaired model: the detector sits in front of the BadNet, and a flagged input is rejected.`,
        ...(r?.cleanTest && r.poisonedTest ? [`On ${r.cleanTest.rows.length} clean and ${r.poisonedTest.rows.length} poisoned test images: ` +
          `FRR ${pct(r.cleanTest.frr)}, FAR ${pct(r.poisonedTest.far)} (trojaned inputs accepted).`] : []),
        ...(m.after ? [`With the detector in front: clean accuracy ${pct(m.after.accuracy)}, ASR ${pct(m.after.asr)}.`] : []),
      ],
    };
  },
});
