/**
 * The HTML report: one self-contained file (inline CSS, figures inline as SVG or PNG data
 * URLs, no scripts, no external references; a Content-Security-Policy forbids loading
 * anything else), built as a pure function of the defense's results. Also the GoodNet
 * table as Markdown (terminal) and CSV.
 */
import type { ComparisonRow } from '../defense/compare.js';
import type { ActivationProfile, GoodNetRow, PruneOrder, SweepResult } from '../defense/types.js';
import type { Figure } from './figures.js';
import { markdownTable, percent } from './table.js';

export interface ReportModel {
  path: string;
  sha256: string;
  /** e.g. 'keras-h5', 'keras-weights+deepid', 'tfjs'. */
  format: string;
  /** Input shape without the batch dimension, e.g. [55, 47, 3]. */
  inputShape: (number | null)[];
  numClasses: number;
}

export interface ReportDataFile {
  /** e.g. 'clean validation', 'poisoned test'. */
  role: string;
  path: string;
  sha256: string;
  images: number;
}

export interface ReportData {
  /** 'prune' (default): a pruning run's report; 'compare': a `goodnet compare` folder (no sweep, test sets only). */
  kind?: 'prune' | 'compare';
  title: string;
  /** ISO 8601 time the results were produced. */
  generatedAt: string;
  /** The command lines that produced the results, in order. */
  commands: string[];
  model: ReportModel;
  data: ReportDataFile[];
  /** The attacker's target label. */
  target: number;
  /** Optional class name of the target. */
  targetName?: string;
  /** The BadNet B (unpruned), rates in 0..1. */
  baseline: { validAccuracy: number; validAsr: number; testAccuracy: number; testAsr: number };
  profile?: ActivationProfile;
  sweeps: SweepResult[];
  goodnet: GoodNetRow[];
  /**
   * Placed by name: 'samples-clean', 'samples-poisoned', 'activation-profile', 'sweep',
   * 'repaired', 'dual-axis-asc', 'dual-axis-desc'; any other name goes under "Other figures".
   */
  figures: Figure[];
  /** e.g. goodnet, node, @tensorflow/tfjs-core, backend. */
  versions: Record<string, string>;
  /** How raw pixels became the model input, as text (e.g. "scale 255, mean 0.5, std 0.25"). */
  preprocessing?: string;
  /** Seconds per stage. */
  timings: Record<string, number>;
  notes?: string[];
  /** Later additions (e.g. fine-pruning). `html` is inserted as is: build it with escapeHtml. */
  extraSections?: { title: string; html: string }[];
}

export const KNOWN_FIGURES = ['samples-clean', 'samples-poisoned', 'activation-profile', 'sweep', 'repaired', 'dual-axis-asc', 'dual-axis-desc'] as const;

const ORDERS: PruneOrder[] = ['asc', 'desc'];
const ORDER_TEXT: Record<PruneOrder, string> = {
  asc: 'ascending order of mean activation (least active channels pruned first, the paper’s defense)',
  desc: 'descending order of mean activation (most active channels pruned first)',
};

// ---------------------------------------------------------------------------------------
// Text

/** Escape text for HTML element content and quoted attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}
const esc = escapeHtml;

/** Seconds as "0.42 s", "12.3 s", "6 min 52 s", "1 h 03 min". */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return 'n/a';
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600 - 0.5) {
    const t = Math.round(s);
    return `${Math.floor(t / 60)} min ${String(t % 60).padStart(2, '0')} s`;
  }
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

const pct = (x: number, digits = 2) => percent(x, digits);


// ---------------------------------------------------------------------------------------
// Tables for the terminal and for files

import { rowsFor } from '../defense/goodnet_tables.js';
export { markdownGoodNetTable, goodnetCsv } from '../defense/goodnet_tables.js';

// ---------------------------------------------------------------------------------------
// Figures

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Width and height from a PNG's IHDR (0, 0 when it is not a PNG). */
function pngSize(png: Uint8Array): { width: number; height: number } {
  if (png.length < 24 || png[0] !== 0x89 || png[1] !== 0x50) return { width: 0, height: 0 };
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: v.getUint32(16), height: v.getUint32(20) };
}

/** Anything in an SVG that could run or fetch: such an SVG is shown as its PNG instead. */
const UNSAFE_SVG = /<script|<foreignObject|<iframe|<use\b[^>]*href="(?!#)|\son[a-z]+\s*=|javascript:|(?:href|src)\s*=\s*["']?\s*(?!data:|#)[a-z][\w+.-]*:|url\(\s*["']?(?!#|data:)/i;

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'fig';
}

/**
 * An SVG ready to sit inside HTML: no XML prolog or namespace declarations (the HTML
 * parser supplies them), ids made unique to this figure, sized by CSS.
 */
function inlineSvg(fig: Figure, index: number): string | undefined {
  let svg = fig.svg.trim().replace(/^<\?xml[^>]*>\s*/, '').replace(/^<!DOCTYPE[^>]*>\s*/i, '');
  if (!svg.startsWith('<svg') || UNSAFE_SVG.test(svg)) return undefined;
  const prefix = `f${index}-${slug(fig.name)}-`;
  const ids = new Set<string>();
  for (const m of svg.matchAll(/\sid="([^"]+)"/g)) ids.add(m[1]!);
  if (ids.size) {
    svg = svg.replace(/(\sid=")([^"]+)"/g, (_, a: string, id: string) => `${a}${prefix}${id}"`);
    svg = svg.replace(/url\(#([^)]+)\)/g, (m, id: string) => (ids.has(id) ? `url(#${prefix}${id})` : m));
    svg = svg.replace(/((?:xlink:)?href=")#([^"]+)"/g, (m, a: string, id: string) => (ids.has(id) ? `${a}#${prefix}${id}"` : m));
  }
  svg = svg.replace(/^<svg([^>]*)>/, (_, attrs: string) => {
    const kept = attrs.replace(/\s+xmlns(?::\w+)?="[^"]*"/g, '').replace(/\s+(?:role|aria-label|class)="[^"]*"/g, '');
    return `<svg${kept} class="figure-svg" role="img" aria-label="${esc(fig.title)}">`;
  });
  return svg;
}

function figureImg(fig: Figure): string {
  const { width, height } = pngSize(fig.png);
  const size = width && height ? ` width="${Math.round(width / 2)}" height="${Math.round(height / 2)}"` : '';
  return `<img class="figure-img" src="data:image/png;base64,${base64(fig.png)}"${size} alt="${esc(fig.title)}">`;
}

/** Sample grids go in as PNG (exact pixels), charts as inline SVG (crisp, selectable text). */
export function renderFigure(fig: Figure, index: number, caption?: string): string {
  const svg = fig.name.startsWith('samples') ? undefined : inlineSvg(fig, index);
  const body = svg ?? figureImg(fig);
  const cap = caption ?? fig.title;
  return `<figure id="figure-${esc(slug(fig.name))}">${body}<figcaption>${esc(cap)}</figcaption></figure>`;
}

// ---------------------------------------------------------------------------------------
// Sections

function section(id: string, title: string, body: string): string {
  return `<section id="${id}">\n<h2>${esc(title)}</h2>\n${body}\n</section>`;
}

function fileTable(data: ReportData): string {
  const m = data.model;
  const rows = [
    `<tr><td>model</td><td class="path">${esc(m.path)}</td><td class="hash">${esc(m.sha256)}</td><td class="num">–</td></tr>`,
    ...data.data.map(
      (d) =>
        `<tr><td>${esc(d.role)}</td><td class="path">${esc(d.path)}</td><td class="hash">${esc(d.sha256)}</td><td class="num">${esc(d.images.toLocaleString('en-US'))}</td></tr>`,
    ),
  ];
  return `<table class="files"><thead><tr><th>role</th><th>path</th><th>sha256</th><th class="num">images</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function kvTable(entries: [string, string][], cls: string): string {
  if (!entries.length) return '<p class="muted">none recorded</p>';
  return `<table class="${cls}"><tbody>${entries.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</tbody></table>`;
}

function card(label: string, value: string, sub: string, tone: 'acc' | 'asr' | 'plain'): string {
  return `<div class="card ${tone}"><div class="card-label">${esc(label)}</div><div class="card-value">${esc(value)}</div><div class="card-sub">${esc(sub)}</div></div>`;
}

function summary(data: ReportData): string {
  const m = data.model;
  const shape = m.inputShape.map((d) => (d === null ? '?' : String(d))).join(' × ');
  const target = data.targetName ? `${data.target} (${data.targetName})` : String(data.target);
  const compare = data.kind === 'compare';
  const sub = (valid: number) => (compare ? 'test set' : `test · validation ${pct(valid)}`);
  const cards = [
    card('BadNet clean accuracy', pct(data.baseline.testAccuracy), sub(data.baseline.validAccuracy), 'acc'),
    card('BadNet ASR (attack success rate)', pct(data.baseline.testAsr), sub(data.baseline.validAsr), 'asr'),
  ];
  for (const r of rowsFor(data.goodnet, 'asc')) {
    cards.push(
      card(
        `GoodNet G, X = ${r.threshold}`,
        `${pct(r.goodnet.asr)} ASR`,
        `accuracy ${pct(r.goodnet.accuracy)} · detects ${pct(r.goodnet.detectionRate)}`,
        'plain',
      ),
    );
  }
  const dataList = data.data.length
    ? `<ul class="plain">${data.data.map((d) => `<li><span class="role">${esc(d.role)}</span> <code>${esc(d.path)}</code> <span class="muted">(${esc(d.images.toLocaleString('en-US'))} images)</span></li>`).join('')}</ul>`
    : '<span class="muted">none</span>';
  const notes = data.notes?.length ? `<div class="notes"><ul>${data.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul></div>` : '';
  return `<section id="summary">
<div class="cards">${cards.join('')}</div>
<dl class="facts">
<dt>Model</dt><dd><code>${esc(m.path)}</code> <span class="muted">${esc(m.format)}, input ${esc(shape || '?')}, ${esc(Number.isFinite(m.numClasses) ? m.numClasses : '?')} classes</span></dd>
<dt>Data</dt><dd>${dataList}</dd>
<dt>Target label</dt><dd>${esc(target)}</dd>
${compare ? '' : `<dt>Pruned layer</dt><dd>${esc(layerText(data))}</dd>
`}<dt>Generated</dt><dd>${esc(data.generatedAt)}</dd>
</dl>
${notes}
</section>`;
}

function layerText(data: ReportData): string {
  const s = data.sweeps[0];
  const p = data.profile;
  const conv = s?.convLayer ?? p?.convLayer;
  const pool = s?.poolLayer ?? p?.poolLayer;
  const ch = s?.channels ?? p?.channels;
  if (!conv) return 'n/a';
  return `${conv} (${ch ?? '?'} channels), ranked by mean activation at ${pool ?? '?'}`;
}

function baselineSection(data: ReportData): string {
  const b = data.baseline;
  const validRow = data.kind === 'compare' ? '' : `<tr><th scope="row">validation</th><td class="num">${pct(b.validAccuracy)}</td><td class="num">${pct(b.validAsr)}</td></tr>
`;
  const table = `<table class="data narrow"><thead><tr><th></th><th class="num">clean accuracy</th><th class="num">attack success rate</th></tr></thead><tbody>
${validRow}<tr><th scope="row">test</th><td class="num">${pct(b.testAccuracy)}</td><td class="num">${pct(b.testAsr)}</td></tr>
</tbody></table>`;
  return section(
    'badnet',
    'The BadNet B',
    `<p>Clean accuracy is the share of clean images classified correctly; the attack success rate (ASR) is the share of poisoned images sent to the target label ${esc(data.target)}.</p>${table}`,
  );
}

function picksTable(s: SweepResult): string {
  const rows = [...s.picks].sort((a, b) => a.threshold - b.threshold);
  if (!rows.length) return '';
  const body = rows
    .map((p) => {
      const reached = p.step !== null;
      return `<tr><td class="num">${esc(p.threshold)}</td><td>${esc(p.rule)}</td><td class="num">${reached ? esc(p.step) : '–'}</td><td class="num">${reached ? `${p.pruned.length} / ${s.channels}` : 'not reached'}</td><td class="num">${reached ? pct(p.validAccuracy) : '–'}</td><td class="num">${reached ? pct(p.validAsr) : '–'}</td></tr>`;
    })
    .join('');
  return `<table class="data"><caption>Repaired models B′<sub>X</sub> picked on validation data, ${esc(s.order === 'asc' ? 'ascending' : 'descending')} order (sweep took ${esc(formatSeconds(s.seconds))})</caption>
<thead><tr><th class="num">X</th><th>rule</th><th class="num">step</th><th class="num">channels pruned</th><th class="num">valid accuracy</th><th class="num">valid ASR</th></tr></thead><tbody>${body}</tbody></table>`;
}

function goodnetTable(data: ReportData, order: PruneOrder, n: number): string {
  const rows = rowsFor(data.goodnet, order);
  const channels = data.sweeps.find((s) => s.order === order)?.channels;
  const body = rows
    .map((r) => {
      const k = channels ? ` <span class="muted">(${Math.round(r.fractionPruned * channels)}/${channels})</span>` : '';
      return `<tr><th scope="row" class="num">${esc(r.threshold)}%</th><td class="num">${pct(r.fractionPruned, 1)}${k}</td><td class="num acc">${pct(r.repaired.accuracy)}</td><td class="num asr">${pct(r.repaired.asr)}</td><td class="num acc">${pct(r.goodnet.accuracy)}</td><td class="num asr">${pct(r.goodnet.asr)}</td><td class="num">${pct(r.goodnet.detectionRate)}</td><td class="num">${pct(r.goodnet.falseAlarmRate)}</td></tr>`;
    })
    .join('');
  return `<table class="data goodnet"><caption><strong>Table ${n}.</strong> Pruning in ${esc(ORDER_TEXT[order])}: test performance of the repaired model B′<sub>X</sub> and of the GoodNet G<sub>X</sub></caption>
<thead>
<tr><th rowspan="2" class="num">X</th><th rowspan="2" class="num">fraction pruned</th><th colspan="2" class="group">repaired B′<sub>X</sub></th><th colspan="4" class="group">GoodNet G<sub>X</sub></th></tr>
<tr><th class="num">clean test accuracy</th><th class="num">ASR</th><th class="num">clean accuracy</th><th class="num">ASR</th><th class="num">detection rate</th><th class="num">false-alarm rate</th></tr>
</thead><tbody>${body}</tbody></table>`;
}

const CSS = `
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #ffffff; --soft: #f6f7f9; --acc: #2f6db5; --asr: #d1495b; }
* { box-sizing: border-box; }
html { background: var(--soft); }
body { margin: 0 auto; max-width: 1120px; padding: 32px 40px 48px; background: var(--bg); color: var(--fg);
  font: 15px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", "DejaVu Sans", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { border-bottom: 3px solid var(--fg); padding-bottom: 14px; margin-bottom: 20px; }
header h1 { font-size: 26px; line-height: 1.25; margin: 0 0 4px; }
header .sub { color: var(--muted); margin: 0; }
nav { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0 0 14px; font-size: 13.5px; }
nav a { color: var(--acc); text-decoration: none; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
h2 { font-size: 20px; margin: 40px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 8px; }
p { margin: 8px 0 12px; }
code, pre, .hash, .path { font-family: "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
pre { background: #0f172a; color: #e2e8f0; padding: 14px 16px; border-radius: 6px; overflow-x: auto; line-height: 1.6; white-space: pre-wrap; word-break: break-all; }
pre .prompt { color: #64748b; user-select: none; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin: 8px 0 20px; }
.card { border: 1px solid var(--line); border-left: 4px solid var(--muted); border-radius: 6px; padding: 10px 14px; background: var(--bg); }
.card.acc { border-left-color: var(--acc); } .card.asr { border-left-color: var(--asr); }
.card-label { font-size: 12.5px; color: var(--muted); }
.card-value { font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.3; }
.card.acc .card-value { color: var(--acc); } .card.asr .card-value { color: var(--asr); }
.card-sub { font-size: 12.5px; color: var(--muted); }
dl.facts { display: grid; grid-template-columns: 130px 1fr; gap: 6px 16px; margin: 0; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
ul.plain { list-style: none; margin: 0; padding: 0; }
.role { display: inline-block; min-width: 150px; }
.notes { margin-top: 16px; padding: 8px 14px; background: #fffbeb; border: 1px solid #fde68a; border-radius: 6px; font-size: 14px; }
.notes ul { margin: 4px 0; padding-left: 20px; }
table { border-collapse: collapse; margin: 12px 0 20px; font-size: 14px; }
table.data { width: 100%; }
table.narrow { width: auto; min-width: 420px; }
caption { caption-side: top; text-align: left; padding: 0 0 8px; color: var(--fg); font-size: 14px; }
th, td { padding: 7px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; font-size: 13px; color: #374151; border-bottom: 2px solid #d1d5db; vertical-align: bottom; }
thead th.group { text-align: center; border-bottom: 1px solid #d1d5db; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #f1f5f9; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.acc { color: var(--acc); } td.asr { color: var(--asr); }
table.files td.path { overflow-wrap: anywhere; }
table.files td.hash { font-size: 12px; color: #374151; overflow-wrap: anywhere; }
table.kv th { font-weight: 600; color: #374151; padding-right: 24px; }
figure { margin: 18px 0 28px; padding: 14px; border: 1px solid var(--line); border-radius: 8px; background: #fff; text-align: center; overflow-x: auto; }
figure svg.figure-svg, figure img.figure-img { display: block; margin: 0 auto; max-width: 100%; height: auto; }
figure img.figure-img { image-rendering: auto; }
figcaption { margin-top: 8px; font-size: 13px; color: var(--muted); }
footer { margin-top: 48px; padding-top: 16px; border-top: 3px solid var(--fg); font-size: 13.5px; }
footer h2 { font-size: 16px; border: none; margin: 20px 0 6px; }
footer .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
@media (max-width: 760px) { body { padding: 20px 14px; } footer .cols { grid-template-columns: 1fr; } dl.facts { grid-template-columns: 1fr; } }
@media print { html { background: #fff; } body { max-width: none; padding: 0; } nav { display: none; } figure, table { break-inside: avoid; } pre { white-space: pre-wrap; } }
`;

/** The whole report as one self-contained HTML document. */
export function renderReport(data: ReportData): string {
  const byName = new Map<string, Figure>();
  for (const f of data.figures) if (!byName.has(f.name)) byName.set(f.name, f);
  let figIndex = 0;
  const fig = (name: string, caption?: string) => {
    const f = byName.get(name);
    return f ? renderFigure(f, figIndex++, caption) : '';
  };
  const sections: string[] = [];
  const nav: [string, string][] = [];
  const add = (id: string, title: string, body: string) => {
    if (!body.trim()) return;
    nav.push([id, title]);
    sections.push(section(id, title, body));
  };

  add(
    'commands',
    'How this was made',
    data.commands.length
      ? `<pre><code>${data.commands.map((c) => `<span class="prompt">$ </span>${esc(c)}`).join('\n')}</code></pre>`
      : '<p class="muted">No commands recorded.</p>',
  );
  nav.push(['badnet', 'The BadNet']);
  sections.push(baselineSection(data));

  const p = data.profile;
  add(
    'profile',
    'Activation profile',
    (p
      ? `<p>Mean activation of each of the ${esc(p.channels)} channels of <code>${esc(p.convLayer)}</code>, measured at <code>${esc(p.poolLayer)}</code> over ${esc(p.images.toLocaleString('en-US'))} images from <code>${esc(p.source)}</code>. Channels that clean inputs leave dormant are where a backdoor can hide; pruning in ascending order removes them first.</p>`
      : '') + fig('activation-profile'),
  );
  add('samples', 'Sample images', fig('samples-clean') + fig('samples-poisoned'));

  const sweeps = [...data.sweeps].sort((a, b) => ORDERS.indexOf(a.order) - ORDERS.indexOf(b.order));
  add(
    'sweep',
    'Pruning sweep',
    (sweeps.length
      ? `<p>Channels of <code>${esc(sweeps[0]!.convLayer)}</code> are pruned one at a time, and clean validation accuracy and ASR are measured after each. The repaired model B′<sub>X</sub> is the first whose accuracy dropped by at least X points.</p>`
      : '') +
      fig('sweep') +
      sweeps.map(picksTable).join(''),
  );

  const orders = ORDERS.filter((o) => data.goodnet.some((r) => r.order === o));
  add(
    'goodnet',
    'Repaired models and GoodNets',
    orders.length
      ? `<p>G<sub>X</sub> answers like B when B and B′<sub>X</sub> agree and answers “backdoor” (class N+1) when they disagree. Detection rate: share of poisoned test images G flags; false-alarm rate: share of clean test images G flags. All figures on the test sets.</p>` +
          orders.map((o, i) => goodnetTable(data, o, i + 1)).join('') +
          fig('repaired')
      : fig('repaired'),
  );
  add('dual-axis', 'Accuracy against ASR', fig('dual-axis-asc') + fig('dual-axis-desc'));

  const known = new Set<string>(KNOWN_FIGURES);
  const others = data.figures.filter((f, i) => !known.has(f.name) && data.figures.indexOf(f) === i);
  add('other-figures', 'Other figures', others.map((f) => renderFigure(f, figIndex++)).join(''));
  for (const [i, s] of (data.extraSections ?? []).entries()) add(`extra-${i + 1}`, s.title, s.html);

  const versions = Object.entries(data.versions);
  const timings = Object.entries(data.timings).map(([k, v]) => [k, formatSeconds(v)] as [string, string]);
  const footer = `<footer id="footer-info">
<div class="cols">
<div><h2>Versions</h2>${kvTable(versions, 'kv')}</div>
<div><h2>Timings</h2>${kvTable(timings, 'kv')}</div>
</div>
<h2>Input files</h2>
${fileTable(data)}
${data.preprocessing ? `<p id="preprocessing">Preprocessing (raw pixels x to model input: (x / scale − mean) / std per channel): ${esc(data.preprocessing)}</p>\n` : ''}<p class="muted">Generated ${esc(data.generatedAt)} by goodnet${data.versions['goodnet'] ? ` ${esc(data.versions['goodnet'])}` : ''}. This file is self-contained and loads nothing from elsewhere.</p>
</footer>`;

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:">
<meta name="generator" content="goodnet">
<title>${esc(data.title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${esc(data.title)}</h1>
<p class="sub">${data.kind === 'compare' ? 'Backdoor defenses compared' : 'Backdoor detection and repair by pruning'} · target label ${esc(data.targetName ? `${data.target} (${data.targetName})` : data.target)} · ${esc(data.generatedAt)}</p>
</header>
<nav>${nav.map(([id, t]) => `<a href="#${id}">${esc(t)}</a>`).join('')}<a href="#footer-info">Versions &amp; files</a></nav>
${summary(data)}
${sections.join('\n')}
${footer}
</body>
</html>
`;
}

/** The all-defenses comparison (see defense/compare.ts) as Markdown. */
export function comparisonMarkdown(rows: ComparisonRow[]): string {
  const opt = (x: number | undefined) => (x === undefined ? '-' : pct(x));
  return markdownTable(['defense', 'clean accuracy', 'ASR', 'detection', 'false alarm', 'DER', 'time'], rows.map((r) => [
    r.defense + (r.note ? ` (${r.note})` : ''), pct(r.accuracy), pct(r.asr), opt(r.detectionRate), opt(r.falseAlarmRate),
    r.der === undefined ? '-' : r.der.toFixed(3), r.seconds === undefined ? '-' : `${r.seconds.toFixed(0)} s`,
  ]));
}

/** The comparison as an HTML table (all text escaped). */
export function comparisonHtml(rows: ComparisonRow[]): string {
  const opt = (x: number | undefined) => (x === undefined ? '–' : pct(x));
  const body = rows.map((r) => `<tr><td>${escapeHtml(r.defense)}${r.note ? `<br><small>${escapeHtml(r.note)}</small>` : ''}</td>` +
    `<td>${pct(r.accuracy)}</td><td>${pct(r.asr)}</td><td>${opt(r.detectionRate)}</td><td>${opt(r.falseAlarmRate)}</td>` +
    `<td>${r.der === undefined ? '–' : r.der.toFixed(3)}</td><td>${r.seconds === undefined ? '–' : `${r.seconds.toFixed(0)} s`}</td></tr>`).join('');
  return `<table class="goodnet-compare"><thead><tr><th>defense</th><th>clean accuracy</th><th>ASR</th><th>detection</th>` +
    `<th>false alarm</th><th>DER</th><th>time</th></tr></thead><tbody>${body}</tbody></table>`;
}
