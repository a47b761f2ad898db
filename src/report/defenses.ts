/**
 * The report's sections for every registered defense (what `goodnet compare -o DIR` wrote:
 * comparison.json, sections.json) and for the pruning defense on a second, modern BadNet
 * (a prune output folder). Everything is rendered from those files; nothing here names a
 * defense: the sections are each defense's own report data (src/defense/interface.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GoodnetError } from '../errors.js';
import { comparisonTable, type ComparisonProvenance } from '../defense/comparison.js';
import type { DefenseRow, ReportSection } from '../defense/interface.js';
import type { PruneSummary } from '../defense/prune.js';
import type { GoodNetRow } from '../defense/types.js';
import { COLORS, renderSpec, sampleGrid, sweepCurves, type Figure } from './figures.js';
import { escapeHtml, renderFigure } from './html.js';
import { percent } from './table.js';

/** What `goodnet compare -o DIR` wrote, as the report reads it (the provenance: folders written since session 21). */
export interface ComparisonFolder extends Partial<ComparisonProvenance> {
  model: string;
  target: number;
  cleanValid: string;
  before: { accuracy: number; asr: number };
  rows: DefenseRow[];
  reference: { defense: string; accuracy: number; asr: number }[];
  sections: (ReportSection & { name: string })[];
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new GoodnetError(`not valid JSON (${(err as Error).message})`, path);
  }
}

/** DIR/comparison.json and DIR/sections.json of a compare output folder (undefined when there is none). */
export function readComparisonFolder(dir: string): ComparisonFolder | undefined {
  const p = join(dir, 'comparison.json');
  if (!existsSync(p)) return undefined;
  const c = readJson<Omit<ComparisonFolder, 'sections'>>(p);
  if (!Array.isArray(c.rows)) throw new GoodnetError('no rows: not a `goodnet compare` output', p);
  const s = join(dir, 'sections.json');
  type Stored = ReportSection & { name: string; images?: { caption: string; width: number; height: number; channels: number; pixels: number[] }[] };
  const stored = existsSync(s) ? readJson<Stored[]>(s) : [];
  const sections = stored.map((x) => ({ ...x, images: x.images?.map((im) => ({ ...im, pixels: Float32Array.from(im.pixels) })) }));
  return { ...c, sections };
}

/** The short name of a row: its text before the first parenthesis. */
const shortName = (defense: string) => defense.split(' (')[0]!.trim();

/**
 * Clean accuracy against ASR, one point per row of the comparison (row 0, the BadNet, drawn
 * apart). Rows on the same spot share one label ("no defense = ANP").
 */
export async function comparisonScatter(rows: DefenseRow[], options: { name?: string; title?: string } = {}): Promise<Figure> {
  if (rows.length === 0) throw new GoodnetError('comparisonScatter: no rows');
  const points = rows.map((r, i) => ({
    defense: shortName(r.defense), asr: r.asr, accuracy: r.accuracy,
    kind: i === 0 ? 'no defense' : r.detectionRate !== undefined ? 'detector in front of the model' : 'repaired model',
  })).filter((p) => Number.isFinite(p.accuracy) && Number.isFinite(p.asr));
  const labels = new Map<string, { asr: number; accuracy: number; names: string[] }>();
  for (const p of points) {
    const key = `${p.asr.toFixed(4)}:${p.accuracy.toFixed(4)}`;
    const l = labels.get(key) ?? { asr: p.asr, accuracy: p.accuracy, names: [] };
    if (!l.names.includes(p.defense)) l.names.push(p.defense);
    labels.set(key, l);
  }
  const text = [...labels.values()].map((l) => ({ asr: l.asr, accuracy: l.accuracy, label: l.names.join(' = '), right: l.asr > 0.6, below: false }));
  // A label close under the one above it on the same side goes below its point instead.
  const accs = points.map((p) => p.accuracy);
  const span = Math.max(1e-6, Math.max(...accs) - Math.min(...accs));
  for (const side of [false, true]) {
    const same = text.filter((t) => t.right === side).sort((a, b) => b.accuracy - a.accuracy);
    for (let i = 1; i < same.length; i++) {
      if (!same[i - 1]!.below && (same[i - 1]!.accuracy - same[i]!.accuracy) / span < 0.06) same[i]!.below = true;
    }
  }
  const title = options.title ?? 'Every defense: clean accuracy against attack success rate';
  const textLayer = (right: boolean, below: boolean) => ({
    data: { values: text.filter((t) => t.right === right && t.below === below) },
    mark: { type: 'text', align: right ? 'right' : 'left', dx: right ? -9 : 9, dy: below ? 14 : -8, fontSize: 11, color: COLORS.text },
    encoding: { x: { field: 'asr', type: 'quantitative' }, y: { field: 'accuracy', type: 'quantitative' }, text: { field: 'label' } },
  });
  return renderSpec(options.name ?? 'defenses-scatter', title, {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle: 'test sets; top left is best (accurate, backdoor gone)' },
    width: 520,
    height: 320,
    layer: [
      {
        data: { values: points },
        mark: { type: 'point', filled: true, size: 90, opacity: 0.85 },
        encoding: {
          x: { field: 'asr', type: 'quantitative', title: 'attack success rate', scale: { domain: [0, 1] }, axis: { format: '.0%' } },
          y: { field: 'accuracy', type: 'quantitative', title: 'clean accuracy', scale: { zero: false, nice: false, padding: 14 }, axis: { format: '.1%' } },
          color: {
            field: 'kind', type: 'nominal', title: null,
            scale: { domain: ['no defense', 'repaired model', 'detector in front of the model'], range: [COLORS.asr, COLORS.accuracy, COLORS.neutral] },
            legend: { orient: 'bottom' },
          },
          shape: { field: 'kind', type: 'nominal', legend: null },
          tooltip: [{ field: 'defense' }],
        },
      },
      textLayer(false, false),
      textLayer(true, false),
      textLayer(false, true),
      textLayer(true, true),
    ],
  } as never);
}

/** A section's images (HWC floats in 0..1) as one sample grid. */
async function sectionImages(name: string, s: ReportSection): Promise<Figure | undefined> {
  const ims = s.images ?? [];
  if (!ims.length) return undefined;
  const { width, height, channels } = ims[0]!;
  const same = ims.filter((im) => im.width === width && im.height === height && im.channels === channels);
  const bytes = new Uint8Array(same.length * width * height * channels);
  same.forEach((im, k) => {
    for (let i = 0; i < im.pixels.length; i++) bytes[k * width * height * channels + i] = Math.max(0, Math.min(255, Math.round(im.pixels[i]! * 255)));
  });
  return sampleGrid({
    images: bytes, n: same.length, height, width, channels, captions: same.map((im) => im.caption), columns: Math.min(5, same.length),
    title: `${s.title}: images`, name: `samples-defense-${name.replace(/[^\w.-]/g, '_')}`,
  });
}

function tableHtml(t: { caption?: string; headers: string[]; rows: (string | number)[][] }): string {
  return `<table>${t.caption ? `<caption>${escapeHtml(t.caption)}</caption>` : ''}<thead><tr>${t.headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>` +
    `<tbody>${t.rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

export interface RenderedSections {
  sections: { title: string; html: string }[];
  /** Every figure drawn (to be written to figures/; already inline in the sections). */
  figures: Figure[];
}

/** Figures inside these sections get ids from this index up (the report's own figures count from 0). */
const FIGURE_INDEX_BASE = 500;

/**
 * The defenses' part of the report: the comparison table (BackdoorBench's columns) with the
 * scatter, the BackdoorBench reference, then one section per defense from its own section data.
 */
export async function defenseSections(c: ComparisonFolder, options: { command?: string } = {}): Promise<RenderedSections> {
  let k = FIGURE_INDEX_BASE;
  const figures: Figure[] = [];
  const place = (f: Figure | undefined) => {
    if (!f) return '';
    figures.push(f);
    return renderFigure(f, k++);
  };
  const t = comparisonTable(c.rows);
  const ref = tableHtml({
    headers: ['defense', 'clean accuracy', 'ASR'],
    rows: c.reference.map((r) => [r.defense, `${r.accuracy.toFixed(2)}%`, `${r.asr.toFixed(2)}%`]),
  });
  const main = `<p>Every registered defense on the same BadNet (<code>${escapeHtml(c.model)}</code>, target ${escapeHtml(c.target)}), ` +
    `each given only clean data from <code>${escapeHtml(c.cleanValid)}</code>, then measured on the same test sets. ` +
    'DER is BackdoorBench\'s defense effectiveness rating [max(0, ΔASR) − max(0, ΔACC) + 1] / 2 (0.5: no change; 1: backdoor gone at no cost). ' +
    'A detector (no repaired model) sits in front of the BadNet: a flagged clean input is not a correct answer, a flagged poisoned input is not an attack success. ' +
    'Time: seconds the defense took on this machine.</p>' +
    (options.command ? `<pre><code>$ ${escapeHtml(options.command)}</code></pre>` : '') +
    tableHtml(t) + place(await comparisonScatter(c.rows)) +
    '<p>Reference point, BackdoorBench\'s CIFAR-10 leaderboard (PreAct-ResNet18, BadNets at 10% poisoning; a different data set and network, ' +
    'quoted, not measured here):</p>' + ref;
  const sections = [{ title: 'Defenses compared', html: main }];
  for (const s of c.sections) {
    const html = s.text.map((p) => `<p>${escapeHtml(p)}</p>`).join('') + (s.tables ?? []).map(tableHtml).join('') + place(await sectionImages(s.name, s));
    sections.push({ title: `Defense: ${s.title}`, html });
  }
  return { sections, figures };
}

function goodnetRowsHtml(rows: GoodNetRow[]): string {
  return tableHtml({
    headers: ['order', 'X', 'pruned', 'B′ accuracy', 'B′ ASR', 'G accuracy', 'G ASR', 'detection', 'false alarm'],
    rows: rows.map((r) => [r.order, `${r.threshold}%`, percent(r.fractionPruned, 1), percent(r.repaired.accuracy), percent(r.repaired.asr),
      percent(r.goodnet.accuracy), percent(r.goodnet.asr), percent(r.goodnet.detectionRate), percent(r.goodnet.falseAlarmRate)]),
  });
}

/** The pruning defense on a second BadNet (another architecture): its sweep figure and B′_X / GoodNet table. */
export async function secondBadNetSection(
  summary: PruneSummary, o: { title: string; arch?: string; attack?: { cleanTestAccuracy: number; asrTest: number }; commands?: string[] },
): Promise<RenderedSections> {
  const fig = summary.sweeps.length ? await sweepCurves(summary.sweeps, {
    name: 'sweep-second-badnet', title: `Pruning sweep on the ${o.arch ?? 'second'} BadNet`,
    ...(summary.baseline.validAccuracy !== undefined ? { baselineAccuracy: summary.baseline.validAccuracy } : {}),
  }) : undefined;
  const conv = summary.sweeps[0]?.convLayer;
  const html = `<p>The same pruning defense on a ${escapeHtml(o.arch ?? 'second')} BadNet` +
    (o.attack ? ` (clean test accuracy ${percent(o.attack.cleanTestAccuracy)}, ASR ${percent(o.attack.asrTest)})` : '') +
    (conv ? `: channels of <code>${escapeHtml(conv)}</code> pruned one at a time` : '') + '.</p>' +
    (o.commands?.length ? `<pre><code>${o.commands.map((c) => `$ ${escapeHtml(c)}`).join('\n')}</code></pre>` : '') +
    (fig ? renderFigure(fig, FIGURE_INDEX_BASE - 1) : '') + goodnetRowsHtml(summary.goodnet ?? []);
  return { sections: [{ title: o.title, html }], figures: fig ? [fig] : [] };
}
