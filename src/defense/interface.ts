/**
 * One contract for every defense, and the registry the comparison table, the report and
 * the demo iterate over.
 *
 * A defense gets a model and clean data only (never poisoned data, never the target); it
 * returns a repaired model and/or a verdict ("is this model backdoored, towards which
 * label?") and JSON-able details. Poisoned data and the target are used afterwards, by the
 * caller, only to *measure* what it did (`measureRepair`); nothing a defense chooses can
 * depend on them. Rows for the comparison table and the report section are pure functions
 * of the run and those measurements, so a defense module never imports src/report.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { pixelOptionsFor } from '../io/preprocess.js';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { evaluate } from '../eval/evaluate.js';
import type { LoadedModel } from '../io/model.js';
import { permutation, subsetOf, type TrainingSet } from '../models/train.js';
import { readAll } from './fineprune.js';
import type { TrainEngineChoice } from '../models/ort_train.js';
import { percent } from '../io/table.js';

/** What every defense is given: a model and clean data (nothing poisoned). */
export interface DefenseInput {
  model: LoadedModel;
  /** Clean labelled data the defense may use (file or folder path). */
  cleanValid: string;
  /** Use at most this many clean images (a seeded random subset); default all. */
  cleanImages?: number;
  /** Pixel divisor (default: the model's recorded preprocessing) and HDF5 layout, as for `eval`. */
  scale?: number;
  /** Per-channel normalisation after scaling (default: the model's recorded preprocessing). */
  mean?: number[];
  std?: number[];
  layout?: 'auto' | 'nchw' | 'nhwc';
  batchSize?: number;
  seed?: number;
  /**
   * Engine of the defenses' training steps (fine-pruning's fine-tuning, Neural Cleanse's and
   * trigger unlearning's unlearning, FST's tuning): default 'tfjs', the engine their recorded
   * results came from; 'auto' / 'ort' as TrainOptions.engine (several times faster).
   */
  trainEngine?: TrainEngineChoice;
  log?: (line: string) => void;
  /** Progress of the long stage (labels optimised, iterations, epochs). */
  onProgress?: (stage: string, done: number, total: number, note?: string) => void;
}

/** A defense's answer to "is this model backdoored, and towards which label?". */
export interface Verdict {
  backdoored: boolean;
  /** Labels the defense believes are attack targets. */
  flagged: number[];
}

/**
 * Clean accuracy and ASR of one model on the test sets (0..1). A detector's measurement is
 * of the model with the detector in front: a flagged input is rejected (a rejected clean
 * input is not a correct answer, a rejected poisoned input is not an attack success).
 */
export interface Measurement {
  accuracy: number;
  asr: number;
  /** Detectors: share of poisoned test inputs flagged. */
  detectionRate?: number;
  /** Detectors: share of clean test inputs flagged. */
  falseAlarmRate?: number;
  /** Test images measured, when fewer than the whole test sets (e.g. a detector's limit). */
  images?: { clean: number; poisoned: number };
}

/** What a run returned. `repaired` belongs to the caller (dispose it). */
export interface DefenseRun<D = unknown> {
  defense: string;
  repaired?: tfl.LayersModel;
  verdict?: Verdict;
  /** Clean images the defense read (its whole budget of clean data). */
  cleanImages: number;
  seconds: number;
  /** JSON-able details of what it did (per-label norms, masks, pruned channels...). */
  details: D;
}

/** One row of the comparison table (BackdoorBench's columns plus detection rates). */
export interface DefenseRow {
  defense: string;
  /** Clean test accuracy, 0..1. */
  accuracy: number;
  /** Attack success rate on poisoned test data, 0..1. */
  asr: number;
  der?: number;
  detectionRate?: number;
  falseAlarmRate?: number;
  cleanImages?: number;
  seconds?: number;
  note?: string;
}

/** A report section as plain data: the report renders it (Markdown-ish text, tables, images). */
export interface ReportSection {
  title: string;
  /** Paragraphs of plain text. */
  text: string[];
  tables?: { caption?: string; headers: string[]; rows: (string | number)[][] }[];
  /** Grayscale/RGB images (HWC floats in 0..1), e.g. reversed triggers, with captions. */
  images?: { caption: string; width: number; height: number; channels: number; pixels: Float32Array }[];
}

export interface Defense<O = Record<string, unknown>, D = unknown> {
  /** Command name (`goodnet <name>`) and registry key. */
  name: string;
  title: string;
  /** One line: what it does and what it needs. */
  summary: string;
  /**
   * repair: returns a model; detect: returns no model, only a verdict and/or (an input-level
   * detector such as STRIP) a calibrated detector that `measure` puts in front of the model.
   */
  kind: 'repair' | 'detect';
  defaults: O;
  run(input: DefenseInput, options?: Partial<O>): Promise<DefenseRun<D>>;
  /**
   * Measuring a defense that returns no repaired model (input-level detectors): the model
   * with the run's detector in front, on the test sets. Called only after `run`, only to
   * measure; it may add what it measured to `run.details` (for the report).
   */
  measure?(run: DefenseRun<D>, model: LoadedModel, o: MeasureOptions): Promise<Measurement>;
  /** Rows for the comparison table: `after` is the repaired model's measurement, `before` the BadNet's. */
  rows(run: DefenseRun<D>, m: { before: Measurement; after?: Measurement }): DefenseRow[];
  section(run: DefenseRun<D>, m: { before?: Measurement; after?: Measurement }): ReportSection;
}

// ---------------------------------------------------------------------------------------
// Registry

const REGISTRY = new Map<string, Defense<never, never>>();

/** Add a defense (a module calls this once, at import). */
export function registerDefense<O, D>(d: Defense<O, D>): Defense<O, D> {
  if (REGISTRY.has(d.name)) throw new Error(`defense '${d.name}' registered twice`);
  REGISTRY.set(d.name, d as unknown as Defense<never, never>);
  return d;
}

/** Every registered defense, in registration order. */
export function registeredDefenses(): Defense[] {
  return [...REGISTRY.values()] as unknown as Defense[];
}

export function getDefense(name: string): Defense {
  const d = REGISTRY.get(name);
  if (!d) throw new GoodnetError(`no defense named '${name}' (registered: ${[...REGISTRY.keys()].join(', ')})`);
  return d as unknown as Defense;
}

// ---------------------------------------------------------------------------------------
// Shared helpers

/** DER = [max(0, ASR_before − ASR_after) − max(0, ACC_before − ACC_after) + 1] / 2 (BackdoorBench). */
export function derOf(before: Measurement, after: Measurement): number {
  return (Math.max(0, before.asr - after.asr) - Math.max(0, before.accuracy - after.accuracy) + 1) / 2;
}

/**
 * The clean data a defense may use, read into memory (NHWC, pixels as the model takes them):
 * all of it, or a seeded random subset of `cleanImages`. Labels must be valid classes.
 */
export async function loadCleanData(input: DefenseInput): Promise<TrainingSet> {
  const { model } = input;
  const limit = input.cleanImages;
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 2)) {
    throw new GoodnetError(`clean image budget must be an integer >= 2, got ${String(limit)}`);
  }
  const all = await readAll(input.cleanValid, model.inputShape, pixelOptionsFor(model, input), input.layout, model.numClasses);
  if (limit === undefined || limit >= all.n) return all;
  return subsetOf(all, permutation(all.n, seedrandom(`clean-subset:${input.seed ?? 0}`)).subarray(0, limit));
}

/** Split a set in two by a seeded permutation: the first `share` (at least one image) and the rest. */
export function splitSet(set: TrainingSet, share: number, seed: string): [TrainingSet, TrainingSet] {
  const order = permutation(set.n, seedrandom(seed));
  const k = Math.min(set.n - 1, Math.max(1, Math.round(share * set.n)));
  return [subsetOf(set, order.subarray(0, k)), subsetOf(set, order.subarray(k))];
}

export interface MeasureOptions {
  cleanTest: string;
  poisonedTest: string;
  target: number;
  scale?: number;
  mean?: number[];
  std?: number[];
  layout?: 'auto' | 'nchw' | 'nhwc';
  batchSize?: number;
}

/** Clean accuracy and ASR of `net` (same input contract as `model`) on the test sets. */
export async function measure(model: LoadedModel, net: tfl.LayersModel, o: MeasureOptions): Promise<Measurement> {
  const r = await evaluate({ ...model, net }, { clean: o.cleanTest, poisoned: o.poisonedTest, target: o.target, ...pixelOptionsFor(model, o), layout: o.layout, batchSize: o.batchSize });
  return { accuracy: r.clean!.accuracy, asr: r.poisoned!.asr };
}

/** Options given together or not at all: the measuring sets. */
export function checkMeasureOptions(o: { cleanTest?: string; poisonedTest?: string; target?: number }): MeasureOptions | undefined {
  const given = [o.cleanTest, o.poisonedTest, o.target].filter((v) => v !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3) throw new GoodnetError('give --clean-test, --poisoned-test and --target together (they only measure), or none of them');
  return { cleanTest: o.cleanTest!, poisonedTest: o.poisonedTest!, target: o.target! };
}

/** The standard row of a model-repairing defense. */
/** The sentence a repairing defense's report section ends with, when the test sets were measured. */
export function repairedSentence(m: { after?: Measurement }): string[] {
  return m.after ? [`Repaired model on the test sets: clean accuracy ${percent(m.after.accuracy)}, ASR ${percent(m.after.asr)}.`] : [];
}

export function repairRow(name: string, run: DefenseRun, m: { before: Measurement; after?: Measurement }, note?: string): DefenseRow[] {
  if (!m.after) return [];
  const { images: _images, ...after } = m.after;
  return [{ defense: name, ...after, der: derOf(m.before, m.after), cleanImages: run.cleanImages, seconds: run.seconds, ...(note ? { note } : {}) }];
}
