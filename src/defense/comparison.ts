/**
 * `goodnet compare` as a function: every registered defense (or a chosen few) on one BadNet,
 * each run on the same clean data, then measured on the same test sets, in BackdoorBench's
 * columns: clean accuracy, ASR, DER, clean images used, time.
 *
 * Outputs (when `out` is given; written atomically as one folder): comparison.json (rows and
 * every defense's result), comparison.md, <defense>.json, models/<defense>.h5.
 */
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GoodnetError } from '../errors.js';
import { checkWritable, writeAtomically } from '../io/atomic.js';
import type { LoadedModel } from '../io/model.js';
import { getDefense, measure, registeredDefenses, type DefenseInput, type DefenseRow, type Measurement, type ReportSection } from './interface.js';
import './registry.js';
import { runDefense, type RunDefenseResult } from './run.js';
import { percent as pct } from '../io/table.js';
import { sha256 } from '../io/hash.js';
import { openDataset } from '../io/dataset.js';
import { pixelOptionsFor, preprocessingText } from '../io/preprocess.js';

export interface CompareOptions extends Omit<DefenseInput, 'model'> {
  model: LoadedModel;
  cleanTest: string;
  poisonedTest: string;
  target: number;
  /** Defense names (default: every registered one). */
  defenses?: string[];
  /** Per-defense options, by name. */
  options?: Record<string, Record<string, unknown>>;
  out?: string;
  overwrite?: boolean;
  /** Called before and after each defense. */
  onDefense?: (name: string, result?: RunDefenseResult) => void;
  /** The command line, recorded in comparison.json (shown by `goodnet report`). */
  command?: string;
}

/** What comparison.json records besides the result, for `goodnet report DIR`: the inputs (with hashes) and the command. */
export interface ComparisonProvenance {
  command?: string;
  modelInfo: { path: string; format: string; inputShape: (number | null)[]; numClasses: number };
  inputs: { role: string; path: string; sha256: string; images: number }[];
  preprocessing: string;
}

async function provenance(o: CompareOptions): Promise<ComparisonProvenance> {
  const m = o.model;
  const inputs: ComparisonProvenance['inputs'] = [];
  for (const [role, path] of [['clean validation', o.cleanValid], ['clean test', o.cleanTest], ['poisoned test', o.poisonedTest]] as const) {
    const ds = await openDataset(path, { layout: o.layout });
    const images = ds.length;
    ds.close();
    inputs.push({ role, path: resolve(path), sha256: await sha256(path), images });
  }
  return {
    ...(o.command ? { command: o.command } : {}),
    modelInfo: { path: resolve(m.source), format: m.format, inputShape: [...m.inputShape], numClasses: m.numClasses },
    // A model built in memory (a library caller's) has no file to hash.
    inputs: [{ role: 'model', path: resolve(m.source), sha256: existsSync(m.source) ? await sha256(m.source) : 'not a file', images: 0 }, ...inputs],
    preprocessing: preprocessingText(pixelOptionsFor(m, o)),
  };
}

export interface CompareResult {
  model: string;
  target: number;
  cleanValid: string;
  before: Measurement;
  rows: DefenseRow[];
  results: RunDefenseResult[];
  sections: ReportSection[];
  /** Registered names of the defenses run, in the order of `sections` and `results`. */
  names: string[];
  /** BackdoorBench's CIFAR-10 PreAct-ResNet18 BadNets (10%) leaderboard, quoted as the reference point. */
  reference: { defense: string; accuracy: number; asr: number }[];
}

/** BackdoorBench (CIFAR-10, PreAct-ResNet18, BadNets 10% poisoning), clean accuracy / ASR in %. */
export const BACKDOORBENCH_REFERENCE = [
  { defense: 'no defense', accuracy: 91.32, asr: 95.03 },
  { defense: 'fine-pruning', accuracy: 91.31, asr: 57.13 },
  { defense: 'ANP', accuracy: 84.17, asr: 0.73 },
  { defense: 'CLP', accuracy: 90.07, asr: 77.56 },
  { defense: 'Neural Cleanse', accuracy: 89.05, asr: 1.27 },
  { defense: 'NAD', accuracy: 89.87, asr: 2.14 },
  { defense: 'i-BAU', accuracy: 89.16, asr: 1.29 },
];

/**
 * Quick settings (`goodnet compare --quick`, the demo's): the costly optimisations cut short so
 * that every registered defense runs in about a minute on the demo's BadNet on 2 cores. By
 * name; a defense not listed runs with its defaults. Full settings: `goodnet compare` without it.
 */
export const QUICK_DEFENSE_OPTIONS: Record<string, Record<string, unknown>> = {
  nc: { maxEpochs: 10 },
  anp: { iterations: 60 },
  rnp: { recoverEpochs: 5 },
  strip: { limit: 1000, heldOut: 0.2 },
  fst: { epochs: 5 },
  unlearn: { rounds: 1, reverseEpochs: 10, epochs: 3 },
  sau: { epochs: 1 },
};


/**
 * The comparison as a table: BackdoorBench's columns (clean accuracy, ASR, DER, clean images
 * used, time), plus detection and false-alarm rates when a detector is among the rows.
 */
export function comparisonTable(rows: DefenseRow[]): { headers: string[]; rows: string[][] } {
  const detectors = rows.some((r) => r.detectionRate !== undefined || r.falseAlarmRate !== undefined);
  const opt = (x: number | undefined) => (x === undefined ? '-' : pct(x));
  return {
    headers: ['defense', 'clean accuracy', 'ASR', ...(detectors ? ['detection', 'false alarm'] : []), 'DER', 'clean images', 'time'],
    rows: rows.map((r) => [
      r.defense + (r.note ? ` (${r.note})` : ''), pct(r.accuracy), pct(r.asr), ...(detectors ? [opt(r.detectionRate), opt(r.falseAlarmRate)] : []),
      r.der === undefined ? '-' : r.der.toFixed(3),
      r.cleanImages === undefined ? '-' : r.cleanImages.toLocaleString('en-US'), r.seconds === undefined ? '-' : `${r.seconds.toFixed(0)} s`,
    ]),
  };
}

/** A report section as JSON (images as plain number arrays, rounded to 1e-4), for `sections.json`. */
export function sectionsToJson(sections: { name: string; section: ReportSection }[]): unknown {
  return sections.map(({ name, section: s }) => ({
    name, ...s, images: s.images?.map((im) => ({ ...im, pixels: Array.from(im.pixels, (v) => Math.round(v * 1e4) / 1e4) })),
  }));
}

export async function runComparison(o: CompareOptions): Promise<CompareResult> {
  const names = o.defenses ?? registeredDefenses().map((d) => d.name);
  if (names.length === 0) throw new GoodnetError('no defenses to compare');
  for (const n of names) getDefense(n); // unknown names fail before any work
  if (o.out) checkWritable(o.out, { overwrite: o.overwrite, folder: true });
  // The inputs' hashes as they were when the run began.
  const record = o.out ? await provenance(o) : undefined;
  const m = { cleanTest: o.cleanTest, poisonedTest: o.poisonedTest, target: o.target, scale: o.scale, mean: o.mean, std: o.std, layout: o.layout, batchSize: o.batchSize };
  const before = await measure(o.model, o.model.net, m);
  const rows: DefenseRow[] = [{ defense: 'no defense (BadNet)', ...before }];
  const results: RunDefenseResult[] = [];
  const sections: ReportSection[] = [];
  const write = async (dir?: string) => {
    for (const name of names) {
      o.onDefense?.(name);
      const r = await runDefense({
        ...o, defense: name, options: o.options?.[name], out: dir && getDefense(name).kind === 'repair' ? join(dir, 'models', `${name}.h5`) : undefined, overwrite: false, before,
      });
      results.push(r.result);
      sections.push(r.section);
      rows.push(...(r.result.rows ?? []));
      o.onDefense?.(name, r.result);
      if (dir) writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(r.result, null, 2)}\n`);
    }
  };
  const result = (): CompareResult => ({
    model: o.model.source, target: o.target, cleanValid: o.cleanValid, before, rows, results, sections, names, reference: BACKDOORBENCH_REFERENCE,
  });
  if (!o.out) {
    await write();
    return result();
  }
  await writeAtomically(o.out, async (dir) => {
    mkdirSync(join(dir, 'models'), { recursive: true });
    await write(dir);
    const r = result();
    writeFileSync(join(dir, 'comparison.json'), `${JSON.stringify({ ...r, sections: undefined, ...record }, null, 2)}\n`);
    const t = comparisonTable(rows);
    const md = [t.headers, t.headers.map(() => '--'), ...t.rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
    writeFileSync(join(dir, 'comparison.md'), `${md}\n`);
    writeFileSync(join(dir, 'sections.json'), `${JSON.stringify(sectionsToJson(names.map((name, i) => ({ name, section: sections[i]! }))))}\n`);
  }, { overwrite: o.overwrite, folder: true });
  return result();
}
