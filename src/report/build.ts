/**
 * `goodnet report DIR`: gather what `prune` (and `attack`, when it made the model) wrote,
 * draw the figures and write one self-contained report.html. Every number in the report is
 * read from those outputs; only the sample grids run the model, on the images they show.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { GoodnetError } from '../errors.js';
import { getBackend } from '../engine/backend.js';
import type { AttackSummary } from '../attack/lab.js';
import type { PruneSummary } from '../defense/prune.js';
import { writeAtomically } from '../io/atomic.js';
import { openDataset } from '../io/dataset.js';
import { loadModel, type LoadedModel } from '../io/model.js';
import '../models/index.js'; // the model a prune ran on may be a weights-only Keras file
import { normalizeInPlace, preprocessingText, type Preprocessing } from '../io/preprocess.js';
import { reportFigures, writeFigure, type Figure } from './figures.js';
import { comparisonHtml, escapeHtml, renderReport, type ReportData } from './html.js';
import { percent } from './table.js';
import type { ComparisonRow } from '../defense/compare.js';
import type { StripResult } from '../detect/strip.js';
import { stripFigure } from './strip_output.js';
import { defenseSections, readComparisonFolder, secondBadNetSection } from './defenses.js';

const PKG = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export interface ReportOptions {
  /** Extra sections (e.g. from later defenses), HTML built with escapeHtml. */
  extraSections?: ReportData['extraSections'];
  notes?: string[];
  /** Extra commands shown before prune's (e.g. the attack and eval of a demo). */
  commands?: string[];
  title?: string;
  /** The command that wrote DIR/compare (shown above the defenses' comparison table). */
  compareCommand?: string;
}

/** The prune summary of DIR: DIR/summary.json, or DIR/prune/summary.json for a demo folder. */
export function findPruneSummary(dir: string): { path: string; summary: PruneSummary } {
  for (const p of [join(dir, 'summary.json'), join(dir, 'prune', 'summary.json')]) {
    if (existsSync(p)) {
      let summary: PruneSummary;
      try {
        summary = JSON.parse(readFileSync(p, 'utf8')) as PruneSummary;
      } catch (err) {
        throw new GoodnetError(`not valid JSON (${(err as Error).message})`, p);
      }
      // A demo folder's own summary.json (phase timings) is not a prune summary: look in prune/.
      if (p === join(dir, 'summary.json') && (summary as unknown as { kind?: string }).kind === 'demo') continue;
      return { path: p, summary };
    }
  }
  throw new GoodnetError('no summary.json here or in prune/: run `goodnet prune --out DIR` first', dir);
}

/** attack.json next to the model's models/ folder, when the model came from `goodnet attack`. */
function findAttack(modelPath: string): AttackSummary | undefined {
  const p = join(dirname(modelPath), '..', 'attack.json');
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as AttackSummary;
  } catch {
    return undefined;
  }
}

interface Samples {
  images: Uint8Array;
  n: number;
  height: number;
  width: number;
  channels: number;
  labels: number[];
  predicted: number[];
}

/** Up to `k` images from a data set (one per class first, for variety) and the model's answers. */
async function samples(path: string, model: LoadedModel, pre: Preprocessing, k: number): Promise<Samples | undefined> {
  if (!existsSync(path)) return undefined;
  const ds = await openDataset(path, { expect: model.inputShape });
  try {
    const [h, w, c] = ds.imageShape;
    const per = h * w * c;
    const picked: number[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < ds.length && picked.length < k; i++) if (!seen.has(ds.labels[i]!)) { seen.add(ds.labels[i]!); picked.push(i); }
    for (let i = 0; i < ds.length && picked.length < k; i++) if (!picked.includes(i)) picked.push(i);
    picked.sort((a, b) => a - b);
    const raw = new Float32Array(picked.length * per);
    const last = picked.at(-1)!;
    let j = 0;
    for await (const b of ds.batches(256)) {
      for (let r = 0; r < b.n; r++) if (picked[j] === b.start + r) raw.set(b.x.subarray(r * per, (r + 1) * per), per * j++);
      if (b.start + b.n > last) break;
    }
    const x = Float32Array.from(raw, (v) => v / pre.scale);
    normalizeInPlace(x, c, pre);
    const predicted = tf.tidy(() => tf.argMax(model.net.predict(tf.tensor4d(x, [picked.length, h, w, c])) as tf.Tensor2D, 1).arraySync() as number[]);
    let max = 0;
    for (const v of raw) max = Math.max(max, v);
    const k255 = max <= 1 ? 255 : 1; // data stored as 0..1 floats is shown as 0..255
    const images = Uint8Array.from(raw, (v) => Math.max(0, Math.min(255, Math.round(v * k255))));
    return { images, n: picked.length, height: h, width: w, channels: c, labels: picked.map((i) => ds.labels[i]!), predicted };
  } finally {
    ds.close();
  }
}

/** A `goodnet compare -o DIR` folder: comparison.json and no prune summary (a demo folder has both). */
export function isCompareFolder(dir: string): boolean {
  return !existsSync(join(dir, 'summary.json')) && !existsSync(join(dir, 'prune', 'summary.json')) && existsSync(join(dir, 'comparison.json'));
}

const versions = (): Record<string, string> => ({ goodnet: PKG.version, node: process.version, '@tensorflow/tfjs-core': tf.version_core, backend: getBackend() });

/** Write DIR/figures/* and DIR/report.html (atomically); returns the report's path. */
async function writeHtml(dir: string, report: ReportData, figures: Figure[]): Promise<string> {
  const out = join(dir, 'report.html');
  const figDir = join(dir, 'figures');
  mkdirSync(figDir, { recursive: true });
  for (const fig of figures) await writeFigure(figDir, fig);
  await writeAtomically(out, (tmp) => writeFileSync(tmp, renderReport(report)), { overwrite: true });
  return out;
}

/** Build the report of DIR (a prune output, a demo folder or a compare output); returns the path of report.html. */
export async function writeReport(dir: string, options: ReportOptions = {}): Promise<string> {
  if (isCompareFolder(dir)) return writeCompareReport(dir, options);
  const { summary } = findPruneSummary(dir);
  const modelIn = summary.inputs.find((i) => i.role === 'model')!;
  const attack = findAttack(modelIn.path);
  const names = attack?.dataset.classNames;
  const name = (l: number) => (names?.[l] !== undefined ? `${l} ${names[l]}` : String(l));
  const data = (role: string) => summary.inputs.find((i) => i.role === role);
  // Older summaries record only the scale.
  const pre: Preprocessing = summary.preprocessing ?? { scale: summary.scale };
  let cleanSamples: Parameters<typeof reportFigures>[0]['cleanSamples'];
  let poisonedSamples: Parameters<typeof reportFigures>[0]['poisonedSamples'];
  if (existsSync(modelIn.path)) {
    const model = await loadModel(modelIn.path);
    const clean = await samples((data('clean test') ?? data('clean validation'))!.path, model, pre, 10);
    const pois = await samples((data('poisoned test') ?? data('poisoned validation'))!.path, model, pre, 10);
    if (clean) {
      cleanSamples = { ...clean, captions: clean.labels.map(name), columns: 5, title: 'Clean test images', subtitle: 'true label' };
    }
    if (pois) {
      poisonedSamples = {
        ...pois, columns: 5, title: 'Poisoned test images', subtitle: `true label / the BadNet's answer (target ${name(summary.target)})`,
        captions: pois.labels.map((l, i) => `true: ${name(l)}\nBadNet: ${name(pois.predicted[i]!)}`),
        emphasis: pois.predicted.map((p) => p === summary.target),
      };
    }
  }
  const baseline = {
    validAccuracy: summary.baseline.validAccuracy,
    validAsr: summary.baseline.validAsr,
    testAccuracy: summary.baseline.testAccuracy ?? NaN,
    testAsr: summary.baseline.testAsr ?? NaN,
  };
  const asc = summary.sweeps.find((s) => s.order === 'asc');
  const pick = asc?.picks.find((p) => p.step !== null);
  const figures: Figure[] = await reportFigures({
    profile: summary.profile,
    profileHighlight: pick ? { channels: pick.pruned, label: `pruned in B'_${pick.threshold} (ascending)` } : undefined,
    sweeps: summary.sweeps,
    rows: summary.goodnet ?? [],
    baseline: { accuracy: baseline.testAccuracy, asr: baseline.testAsr },
    baselineValidAccuracy: baseline.validAccuracy,
    cleanSamples,
    poisonedSamples,
  });
  const extra: NonNullable<ReportData['extraSections']> = [];
  const readJson = <T>(p: string): T | undefined => (existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as T) : undefined);
  const comparison = readJson<ComparisonRow[]>(join(dir, 'comparison.json'));
  if (comparison) {
    extra.push({ title: 'All defenses compared', html:
      '<p>The same BadNet, the same test sets. Detectors (GoodNet, STRIP) count a flagged input as rejected: a rejected clean ' +
      'input is not a correct answer, a rejected poisoned input is not an attack success. DER is BackdoorBench\'s defense ' +
      'effectiveness rating [max(0, ΔASR) − max(0, ΔACC) + 1] / 2 (0.5: no change; 1: backdoor gone at no cost). Time: seconds ' +
      'the defense took on this machine.</p>' + comparisonHtml(comparison) });
  }
  if (summary.finePrune?.length) {
    const rows = summary.finePrune.map((f) => `<tr><td>${escapeHtml(f.order)}</td><td>${f.threshold}%</td><td>${percent(f.fractionPruned, 1)}</td>` +
      `<td>${f.bestEpoch}/${f.epochs}</td><td>${f.before ? percent(f.before.accuracy) : '–'}</td><td>${f.before ? percent(f.before.asr) : '–'}</td>` +
      `<td>${f.after ? percent(f.after.accuracy) : '–'}</td><td>${f.after ? percent(f.after.asr) : '–'}</td><td>${f.seconds.toFixed(0)} s</td></tr>`).join('');
    extra.push({ title: 'Fine-pruning', html:
      `<p>Each B′<sub>X</sub> fine-tuned with Adam (learning rate ${summary.finePrune[0]!.learningRate}) on the clean validation set, ` +
      'its pruned channels re-zeroed after every step; the epoch kept is the one with the best clean accuracy on a held-out ' +
      'fifth of that set (0: fine-tuning did not help). Test sets read only afterwards.</p>' +
      '<table><thead><tr><th>order</th><th>X</th><th>pruned</th><th>epoch kept</th><th>B′ accuracy</th><th>B′ ASR</th>' +
      `<th>FP accuracy</th><th>FP ASR</th><th>time</th></tr></thead><tbody>${rows}</tbody></table>` });
  }
  const strip = readJson<StripResult>(join(dir, 'strip', 'strip.json'));
  if (strip?.cleanTest && strip.poisonedTest) {
    figures.push(await stripFigure(strip));
    // In a demo folder STRIP's text is its defense section (compare/); only the histogram comes from here.
    if (!existsSync(join(dir, 'compare', 'comparison.json'))) extra.push({ title: 'STRIP', html:
      `<p>STRIP (Gao et al. 2019): each input blended with ${strip.settings.n} clean validation images; inputs whose mean prediction ` +
      `entropy is below ${strip.threshold.toFixed(4)} bits (chosen on ${strip.calibration.images} clean validation images for a ` +
      `${percent(strip.settings.frr)} false-rejection rate) are flagged. On ${strip.cleanTest.images} clean and ` +
      `${strip.poisonedTest.images} poisoned test images: FRR ${percent(strip.cleanTest.frr)}, FAR ${percent(strip.poisonedTest.far)} ` +
      `(trojaned inputs accepted). The entropy histogram is under "Other figures".</p>` });
  }
  // A demo folder: the pruning defense on its second (modern) BadNet, and every registered defense.
  const defenseFigures: Figure[] = [];
  const modern = join(dir, 'modern', 'prune', 'summary.json');
  if (existsSync(modern)) {
    const ms = findPruneSummary(join(dir, 'modern', 'prune')).summary;
    const ma = findAttack(ms.inputs.find((i) => i.role === 'model')!.path);
    const r = await secondBadNetSection(ms, {
      title: `Pruning a ${ma?.arch ?? 'second'} BadNet`, arch: ma?.arch,
      attack: ma ? { cleanTestAccuracy: ma.results.cleanTestAccuracy, asrTest: ma.results.asrTest } : undefined,
      commands: [...(ma?.command ? [ma.command] : []), ...(ms.command ? [ms.command] : [])],
    });
    extra.push(...r.sections);
    defenseFigures.push(...r.figures);
  }
  const demoSummary = readJson<{ kind?: string; commands?: string[]; phases?: { phase: string; seconds: number }[] }>(join(dir, 'summary.json'));
  const demoCommands = demoSummary?.kind === 'demo' ? demoSummary.commands : undefined;
  const compared = readComparisonFolder(join(dir, 'compare'));
  if (compared) {
    const r = await defenseSections(compared, { command: options.compareCommand ?? demoCommands?.find((c) => c.startsWith('goodnet compare')) });
    extra.push(...r.sections);
    defenseFigures.push(...r.figures);
  }
  const phases = demoSummary?.kind === 'demo' ? Object.fromEntries((demoSummary.phases ?? []).map((p) => [`demo: ${p.phase}`, p.seconds])) : {};
  const timings: Record<string, number> = { ...phases, ...(attack ? { 'attack (training)': attack.training.seconds, attack: attack.seconds } : {}), ...summary.timings };
  const report: ReportData = {
    title: options.title ?? (attack ? `goodnet report: pruning defense against a ${attack.dataset.name} BadNet` : 'goodnet report: pruning defense'),
    generatedAt: new Date().toISOString(),
    commands: [...new Set([...(options.commands ?? demoCommands ?? (attack?.command ? [attack.command] : [])), ...(summary.command ? [summary.command] : [])])],
    model: { path: modelIn.path, sha256: modelIn.sha256, format: summary.model.format, inputShape: summary.model.inputShape, numClasses: summary.model.numClasses },
    data: summary.inputs.filter((i) => i.role !== 'model').map((i) => ({ role: i.role, path: i.path, sha256: i.sha256, images: i.images ?? 0 })),
    target: summary.target,
    targetName: names?.[summary.target],
    baseline,
    profile: summary.profile,
    sweeps: summary.sweeps,
    goodnet: summary.goodnet ?? [],
    figures,
    versions: versions(),
    timings,
    preprocessing: preprocessingText(pre),
    notes: options.notes,
    extraSections: [...extra, ...(options.extraSections ?? [])],
  };
  return writeHtml(dir, report, [...figures, ...defenseFigures]);
}

/**
 * The report of a `goodnet compare -o DIR` folder: the comparison table and scatter, each
 * defense's section, the inputs with their hashes and the command (comparison.json records
 * them since session 21; older folders show what they have). Nothing is re-run.
 */
async function writeCompareReport(dir: string, options: ReportOptions): Promise<string> {
  const c = readComparisonFolder(dir)!;
  const modelPath = c.modelInfo?.path ?? c.model;
  const attack = findAttack(modelPath);
  const names = attack?.dataset.classNames;
  const r = await defenseSections(c, { command: c.command });
  const inputs = c.inputs ?? [];
  const modelIn = inputs.find((i) => i.role === 'model');
  const timings = Object.fromEntries(c.rows.filter((x) => x.seconds !== undefined).map((x) => [x.defense.split(' (')[0]!, x.seconds!]));
  const report: ReportData = {
    kind: 'compare',
    title: options.title ?? (attack ? `goodnet report: defenses compared on a ${attack.dataset.name} BadNet` : 'goodnet report: defenses compared'),
    generatedAt: new Date().toISOString(),
    commands: [...(options.commands ?? (attack?.command ? [attack.command] : [])), ...(c.command ? [c.command] : [])],
    model: { path: modelPath, sha256: modelIn?.sha256 ?? 'not recorded', format: c.modelInfo?.format ?? 'not recorded', inputShape: c.modelInfo?.inputShape ?? [], numClasses: c.modelInfo?.numClasses ?? NaN },
    data: inputs.filter((i) => i.role !== 'model'),
    target: c.target,
    targetName: names?.[c.target],
    baseline: { validAccuracy: NaN, validAsr: NaN, testAccuracy: c.before.accuracy, testAsr: c.before.asr },
    sweeps: [],
    goodnet: [],
    figures: [],
    versions: versions(),
    timings,
    preprocessing: c.preprocessing,
    notes: options.notes,
    extraSections: [...r.sections, ...(options.extraSections ?? [])],
  };
  return writeHtml(dir, report, r.figures);
}
