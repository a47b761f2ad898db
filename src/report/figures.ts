/**
 * The report's figures, as pure functions of data: each builds a vega-lite spec, compiles
 * it to vega, renders SVG headlessly (no canvas, no browser) and rasterises that SVG to
 * PNG with resvg (WebAssembly) at 2x. Text is set in DejaVu Sans, whose TTFs ship with the
 * package; vega is given the font's real advance widths, so layout matches what is drawn.
 *
 * Palette: clean accuracy is always blue, attack success rate (ASR) always red; the
 * ascending pruning order is drawn solid, the descending order dashed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as vega from 'vega';
import { expressionInterpreter } from 'vega-interpreter';
import { compile, type TopLevelSpec } from 'vega-lite';
import { initWasm, Resvg } from '@resvg/resvg-wasm';
import { GoodnetError } from '../errors.js';
import { writeAtomically } from '../io/atomic.js';
import { encodePng } from '../io/images.js';
import { join } from 'node:path';
import type { ActivationProfile, GoodNetRow, PruneOrder, SweepResult } from '../defense/types.js';
import { parseFontMetrics, type FontMetrics } from './font_metrics.js';

/** A rendered figure: `name` is its file stem and its place in the report. */
export interface Figure {
  name: string;
  title: string;
  svg: string;
  png: Uint8Array;
}

// ---------------------------------------------------------------------------------------
// Look

/** The family the figures are drawn in; the fallbacks only matter to a browser without it. */
export const FONT_FAMILY = 'DejaVu Sans, Verdana, Geneva, sans-serif';
/** PNGs are rendered at this multiple of the SVG's size. */
export const PNG_SCALE = 2;

export const COLORS = {
  accuracy: '#2f6db5',
  accuracyLight: '#92bbe8',
  asr: '#d1495b',
  asrLight: '#f3a6b0',
  neutral: '#6b7280',
  rule: '#9ca3af',
  bar: '#7b8fab',
  text: '#1f2937',
} as const;

const ORDER_NAME: Record<PruneOrder, string> = { asc: 'ascending', desc: 'descending' };
const ORDER_PANEL: Record<PruneOrder, string> = {
  asc: 'Ascending order: least active channels first',
  desc: 'Descending order: most active channels first',
};
const DASH: Record<PruneOrder, number[]> = { asc: [1, 0], desc: [7, 4] };
const METRIC_ACC = 'clean accuracy';
const METRIC_ASR = 'attack success rate';
const ORDERS: PruneOrder[] = ['asc', 'desc'];

const CONFIG = {
  font: FONT_FAMILY,
  background: 'white',
  view: { stroke: '#e5e7eb' },
  axis: {
    labelFontSize: 11,
    titleFontSize: 12,
    titleFontWeight: 'bold',
    titlePadding: 10,
    labelColor: '#374151',
    titleColor: COLORS.text,
    gridColor: '#edf0f3',
    domainColor: '#9ca3af',
    tickColor: '#9ca3af',
  },
  legend: {
    orient: 'bottom',
    direction: 'horizontal',
    labelFontSize: 11,
    titleFontSize: 11,
    titleColor: COLORS.text,
    labelColor: '#374151',
    symbolStrokeWidth: 2.5,
    symbolSize: 160,
    columnPadding: 18,
    labelLimit: 400,
    titleLimit: 400,
    layout: { bottom: { margin: 36 } },
  },
  title: {
    fontSize: 15,
    fontWeight: 'bold',
    color: COLORS.text,
    anchor: 'start',
    offset: 14,
    subtitleFontSize: 12,
    subtitleColor: '#4b5563',
    subtitlePadding: 5,
  },
  header: { labelFontSize: 13, labelFontWeight: 'bold', labelColor: COLORS.text, labelPadding: 8 },
  text: { fontSize: 11, color: COLORS.text },
} as const;

const pct = (x: number, digits = 1) => (Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : 'n/a');

// ---------------------------------------------------------------------------------------
// Rendering

const require = createRequire(import.meta.url);
interface Renderer {
  fonts: Uint8Array[];
  regular: FontMetrics;
  bold: FontMetrics;
}
let ready: Promise<Renderer> | undefined;

/** Load resvg's wasm and the fonts once per process; point vega's text measuring at the font. */
function init(): Promise<Renderer> {
  ready ??= (async () => {
    const regularTtf = readFileSync(require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf'));
    const boldTtf = readFileSync(require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans-Bold.ttf'));
    try {
      await initWasm(readFileSync(require.resolve('@resvg/resvg-wasm/index_bg.wasm')));
    } catch (err) {
      // Someone else in this process got there first: their instance serves us as well.
      if (!/already initiali[sz]ed/i.test(String((err as Error)?.message))) throw err;
    }
    const regular = parseFontMetrics(regularTtf, 'DejaVuSans.ttf');
    const bold = parseFontMetrics(boldTtf, 'DejaVuSans-Bold.ttf');
    useFontMetrics(regular, bold);
    return { fonts: [regularTtf, boldTtf], regular, bold };
  })();
  ready.catch(() => (ready = undefined));
  return ready;
}

interface TextItem {
  fontSize?: number | string;
  fontWeight?: string | number;
}

/** vega's global text-width hook (the same one vl-convert sets). */
function useFontMetrics(regular: FontMetrics, bold: FontMetrics): void {
  const metrics = (vega as unknown as { textMetrics: { width: (item: TextItem, text: unknown) => number } }).textMetrics;
  metrics.width = (item: TextItem, text: unknown) => {
    const s = text == null ? '' : String(text).trim();
    const size = item.fontSize != null ? Number(item.fontSize) || 0 : 11;
    const w = item.fontWeight;
    const isBold = w === 'bold' || w === 'bolder' || (typeof w === 'number' && w >= 600) || (typeof w === 'string' && Number(w) >= 600);
    return (isBold ? bold : regular).width(s, size);
  };
}

/** Rasterise an SVG (as drawn by these functions) to PNG, at `scale` x its size. */
export async function svgToPng(svg: string, scale = PNG_SCALE): Promise<Uint8Array> {
  const { fonts } = await init();
  const resvg = new Resvg(svg, {
    font: { fontBuffers: fonts, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
  });
  try {
    const image = resvg.render();
    try {
      return image.asPng();
    } finally {
      image.free();
    }
  } finally {
    resvg.free();
  }
}

let warnings: string[] = [];

/** Warnings vega-lite and vega raised since the last call (they are not printed). */
export function takeFigureWarnings(): string[] {
  const w = warnings;
  warnings = [];
  return w;
}

function collectingLogger(): vega.LoggerInterface {
  let lvl = vega.Warn;
  const logger: vega.LoggerInterface = {
    level(l?: number) {
      if (l === undefined) return lvl as never;
      lvl = l;
      return logger as never;
    },
    error(...args: readonly unknown[]) {
      throw new GoodnetError(`figure: ${args.map(String).join(' ')}`);
    },
    warn(...args: readonly unknown[]) {
      if (lvl >= vega.Warn) warnings.push(args.map(String).join(' '));
      return logger;
    },
    info() {
      return logger;
    },
    debug() {
      return logger;
    },
  };
  return logger;
}

/** Compile a vega-lite spec and draw it: SVG from vega, PNG from resvg. */
export async function renderSpec(name: string, title: string, spec: TopLevelSpec): Promise<Figure> {
  await init();
  const logger = collectingLogger();
  const config: Record<string, unknown> = { ...CONFIG };
  for (const [k, v] of Object.entries(spec.config ?? {})) {
    const base = config[k];
    config[k] = base && typeof base === 'object' && v && typeof v === 'object' ? { ...base, ...v } : v;
  }
  const merged = { ...spec, config } as TopLevelSpec;
  const compiled = compile(merged, { logger }).spec;
  // vega's expressions are interpreted from their AST rather than compiled with Function, so
  // the same code runs under a Content-Security-Policy without 'unsafe-eval' (the web page).
  const view = new vega.View(vega.parse(compiled, undefined, { ast: true }), { renderer: 'none', logger, expr: expressionInterpreter });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  return { name, title, svg, png: await svgToPng(svg) };
}

/** Write `<dir>/<name>.svg` and `<dir>/<name>.png`, each atomically, replacing old ones. */
export async function writeFigure(dir: string, fig: Figure): Promise<{ svg: string; png: string }> {
  if (!/^[\w.-]+$/.test(fig.name) || fig.name.startsWith('.')) {
    throw new GoodnetError(`invalid figure name '${fig.name}' (letters, digits, '-', '_', '.')`);
  }
  const svg = join(dir, `${fig.name}.svg`);
  const png = join(dir, `${fig.name}.png`);
  await writeAtomically(svg, (tmp) => writeFileSync(tmp, fig.svg), { overwrite: true });
  await writeAtomically(png, (tmp) => writeFileSync(tmp, fig.png), { overwrite: true });
  return { svg, png };
}

// ---------------------------------------------------------------------------------------
// Shared pieces

type Layer = Record<string, unknown>;

/** A text layer drawn twice: a white outline below, the text above, so it reads over lines. */
function haloText(layer: { mark: Record<string, unknown> } & Layer): Layer[] {
  return [
    { ...layer, mark: { ...layer.mark, stroke: 'white', strokeWidth: 4, strokeJoin: 'round', strokeOpacity: 0.9 } },
    layer,
  ];
}

function checkFraction(x: number, what: string): void {
  if (!Number.isFinite(x)) throw new GoodnetError(`figure data: ${what} is not a finite number`);
}

/** A 0..100% axis. (vega thins explicit `values` down to tickCount, so never both.) */
const percentAxis = (title: string, extra: Record<string, unknown> = {}) => ({ title, format: '.0%', values: [0, 0.2, 0.4, 0.6, 0.8, 1], ...extra });

// ---------------------------------------------------------------------------------------
// Sample grid

export interface SampleGridInput {
  /** n images, NHWC, raw 0..255 (grey: channels 1, colour: channels 3). */
  images: Uint8Array;
  n: number;
  height: number;
  width: number;
  channels: number;
  /** One caption per image; '\n' starts a new line. */
  captions: string[];
  columns: number;
  title: string;
  subtitle?: string;
  /** Figure name (file stem); default 'samples'. */
  name?: string;
  /** Captions drawn in the ASR colour (e.g. where the BadNet answered the target). */
  emphasis?: boolean[];
  /** Displayed size of the longer image side, in SVG pixels (default ~96). */
  cellSize?: number;
}

/** Nearest-neighbour upscale of one HWC image by an integer factor. */
function upscale(src: Uint8Array, h: number, w: number, c: number, k: number): Uint8Array {
  if (k === 1) return src;
  const W = w * k;
  const out = new Uint8Array(h * k * W * c);
  for (let y = 0; y < h * k; y++) {
    const sy = Math.floor(y / k);
    for (let x = 0; x < W; x++) {
      const s = (sy * w + Math.floor(x / k)) * c;
      const d = (y * W + x) * c;
      for (let ch = 0; ch < c; ch++) out[d + ch] = src[s + ch]!;
    }
  }
  return out;
}

/** A grid of images (upscaled, pixelated) with a caption under each. */
export async function sampleGrid(input: SampleGridInput): Promise<Figure> {
  const { images, n, height: h, width: w, channels: c, captions, title } = input;
  if (!(Number.isInteger(n) && n > 0 && Number.isInteger(h) && h > 0 && Number.isInteger(w) && w > 0)) {
    throw new GoodnetError(`sampleGrid: invalid shape n=${n} ${h}x${w}`);
  }
  if (c !== 1 && c !== 3) throw new GoodnetError(`sampleGrid: channels must be 1 or 3, got ${c}`);
  if (images.length !== n * h * w * c) {
    throw new GoodnetError(`sampleGrid: expected ${n * h * w * c} bytes for ${n}x${h}x${w}x${c}, got ${images.length}`);
  }
  if (captions.length !== n) throw new GoodnetError(`sampleGrid: ${captions.length} captions for ${n} images`);
  const columns = Math.max(1, Math.min(n, Math.floor(input.columns) || 1));
  const rows = Math.ceil(n / columns);

  // Display scale: integer upscaling for small images (crisp pixels), plain fit for large ones.
  const side = Math.max(h, w);
  const target = input.cellSize ?? 96;
  const scale = side <= target ? Math.max(1, Math.round(target / side)) : target / side;
  const dispW = w * scale;
  const dispH = h * scale;
  // Pixels per image pixel in the PNG data: enough for the 2x raster to stay sharp.
  const k = Number.isInteger(scale) ? Math.min(32, scale * PNG_SCALE) : 1;

  const fontSize = 11;
  const lineHeight = 14;
  const lines = Math.max(1, ...captions.map((s) => s.split('\n').length));
  const { regular, bold } = await init();
  const widest = Math.max(
    0,
    ...captions.flatMap((s, i) => s.split('\n').map((line) => (input.emphasis?.[i] ? bold : regular).width(line, fontSize))),
  );
  const cellW = Math.max(dispW, Math.min(widest, 240)) + 18;
  const cellH = dispH + 8 + lines * lineHeight + 14;

  const values = [];
  const px = h * w * c;
  for (let i = 0; i < n; i++) {
    const img = upscale(images.subarray(i * px, (i + 1) * px), h, w, c, k);
    const url = `data:image/png;base64,${encodePng(img, w * k, h * k, c).toString('base64')}`;
    const col = i % columns;
    const row = Math.floor(i / columns);
    const cx = col * cellW + cellW / 2;
    values.push({
      url,
      x: Math.round(cx - dispW / 2),
      y: row * cellH,
      x2: Math.round(cx - dispW / 2) + dispW,
      y2: row * cellH + dispH,
      cx,
      ty: row * cellH + dispH + 6,
      caption: captions[i]!,
      em: input.emphasis?.[i] === true,
    });
  }
  const spec = {
    title: { text: title, ...(input.subtitle ? { subtitle: input.subtitle } : {}) },
    width: columns * cellW,
    height: rows * cellH - 10,
    padding: 12,
    data: { values },
    config: { view: { stroke: null } },
    layer: [
      {
        mark: { type: 'image', width: dispW, height: dispH, align: 'left', baseline: 'top', smooth: false, aria: false },
        encoding: {
          x: { field: 'x', type: 'quantitative', scale: null, axis: null },
          y: { field: 'y', type: 'quantitative', scale: null, axis: null },
          url: { field: 'url', type: 'nominal' },
        },
      },
      {
        mark: { type: 'rect', fill: null, stroke: '#d1d5db', strokeWidth: 1 },
        encoding: {
          x: { field: 'x', type: 'quantitative', scale: null },
          y: { field: 'y', type: 'quantitative', scale: null },
          x2: { field: 'x2' },
          y2: { field: 'y2' },
        },
      },
      ...[false, true].map((em) => ({
        transform: [{ filter: em ? 'datum.em' : '!datum.em' }],
        mark: {
          type: 'text',
          baseline: 'top',
          align: 'center',
          lineBreak: '\n',
          lineHeight,
          fontSize,
          limit: cellW - 6,
          color: em ? COLORS.asr : COLORS.text,
          fontWeight: em ? 'bold' : 'normal',
        },
        encoding: {
          x: { field: 'cx', type: 'quantitative', scale: null },
          y: { field: 'ty', type: 'quantitative', scale: null },
          text: { field: 'caption', type: 'nominal' },
        },
      })),
    ],
  };
  return renderSpec(input.name ?? 'samples', title, spec as unknown as TopLevelSpec);
}

// ---------------------------------------------------------------------------------------
// Pruning sweep

export interface SweepCurvesOptions {
  /** Threshold picks to mark (default: every pick in the sweeps). */
  thresholds?: number[];
  /** Accuracy of the unpruned BadNet, drawn as a reference rule (default: step 0 of each sweep). */
  baselineAccuracy?: number;
  title?: string;
  name?: string;
}

/** The picks to mark, one entry per distinct step (thresholds that picked the same model share a label). */
function pickRows(sweep: SweepResult, thresholds: number[] | undefined) {
  const picks = sweep.picks
    .filter((p) => p.step !== null && (!thresholds || thresholds.includes(p.threshold)))
    .sort((a, b) => a.threshold - b.threshold);
  const groups: { step: number; fractionPruned: number; validAccuracy: number; validAsr: number; thresholds: number[] }[] = [];
  for (const p of picks) {
    const g = groups.find((x) => x.step === p.step);
    if (g) g.thresholds.push(p.threshold);
    else groups.push({ step: p.step!, fractionPruned: p.fractionPruned, validAccuracy: p.validAccuracy, validAsr: p.validAsr, thresholds: [p.threshold] });
  }
  return groups.map((g, idx) => ({ ...g, idx, label: `X=${g.thresholds.join(', ')}` }));
}

/** Accuracy and ASR against the share of channels pruned: one panel per order. */
export async function sweepCurves(sweeps: SweepResult[], options: SweepCurvesOptions = {}): Promise<Figure> {
  if (sweeps.length === 0) throw new GoodnetError('sweepCurves: no sweeps to draw');
  const sorted = [...sweeps].sort((a, b) => ORDERS.indexOf(a.order) - ORDERS.indexOf(b.order));
  const height = 280;
  const values: Record<string, unknown>[] = [];
  for (const s of sorted) {
    const common = { order: ORDER_NAME[s.order], panel: ORDER_PANEL[s.order] };
    for (const st of s.steps) {
      checkFraction(st.fractionPruned, 'fractionPruned');
      values.push({ ...common, kind: 'curve', x: st.fractionPruned, metric: METRIC_ACC, value: st.accuracy, step: st.step });
      values.push({ ...common, kind: 'curve', x: st.fractionPruned, metric: METRIC_ASR, value: st.asr, step: st.step });
    }
    for (const p of pickRows(s, options.thresholds)) {
      values.push({ ...common, kind: 'pick', x: p.fractionPruned, label: p.label, ly: height - 8 - p.idx * 15 });
      values.push({ ...common, kind: 'pickpt', x: p.fractionPruned, metric: METRIC_ACC, value: p.validAccuracy });
      values.push({ ...common, kind: 'pickpt', x: p.fractionPruned, metric: METRIC_ASR, value: p.validAsr });
    }
    const base = options.baselineAccuracy ?? s.steps[0]?.accuracy;
    if (base !== undefined) values.push({ ...common, kind: 'base', value: base, label: `BadNet accuracy ${pct(base)}` });
  }
  const conv = sorted[0]!.convLayer;
  const present = ORDERS.filter((o) => sorted.some((s) => s.order === o));
  const x = { field: 'x', type: 'quantitative', scale: { domain: [0, 1], nice: false }, axis: percentAxis(`share of ${conv} channels pruned`) };
  const color = {
    field: 'metric',
    type: 'nominal',
    scale: { domain: [METRIC_ACC, METRIC_ASR], range: [COLORS.accuracy, COLORS.asr] },
    legend: { title: null, symbolType: 'stroke' },
  };
  const only = (kind: string) => [{ filter: `datum.kind === '${kind}'` }];
  const spec = {
    title: {
      text: options.title ?? 'Pruning sweep: clean accuracy and attack success rate',
      subtitle: `Validation data, after each pruned channel of ${conv}. Dotted rules: repaired models B′ picked where accuracy first dropped by X points.`,
    },
    data: { values },
    facet: {
      column: {
        field: 'panel',
        type: 'nominal',
        sort: sorted.map((s) => ORDER_PANEL[s.order]),
        header: { title: null },
      },
    },
    spacing: 28,
    padding: 12,
    spec: {
      width: present.length > 1 ? 400 : 640,
      height,
      layer: [
        {
          transform: only('pick'),
          mark: { type: 'rule', color: COLORS.rule, strokeDash: [2, 3], strokeWidth: 1.2 },
          encoding: { x },
        },
        {
          transform: only('base'),
          mark: { type: 'rule', color: COLORS.neutral, strokeDash: [4, 4], strokeWidth: 1 },
          encoding: { y: { field: 'value', type: 'quantitative' } },
        },
        {
          transform: only('curve'),
          mark: { type: 'line', strokeWidth: 2.2, interpolate: 'linear' },
          encoding: {
            x,
            y: { field: 'value', type: 'quantitative', scale: { domain: [0, 1], nice: false }, axis: percentAxis('validation accuracy / ASR') },
            color,
            strokeDash: {
              field: 'order',
              type: 'nominal',
              scale: { domain: present.map((o) => ORDER_NAME[o]), range: present.map((o) => DASH[o]) },
              legend: present.length > 1 ? { title: 'pruning order', titleOrient: 'left', symbolStrokeColor: COLORS.neutral } : null,
            },
            detail: { field: 'metric' },
          },
        },
        {
          transform: only('pickpt'),
          mark: { type: 'point', filled: true, size: 46, stroke: 'white', strokeWidth: 1, opacity: 1 },
          encoding: { x, y: { field: 'value', type: 'quantitative' }, color },
        },
        ...haloText({
          transform: only('pick'),
          mark: { type: 'text', align: 'left', baseline: 'bottom', dx: 3, fontSize: 10, color: '#374151' },
          encoding: { x, y: { field: 'ly', type: 'quantitative', scale: null }, text: { field: 'label' } },
        }),
        ...haloText({
          transform: only('base'),
          mark: { type: 'text', align: 'left', baseline: 'bottom', dy: -3, x: 4, fontSize: 10, color: COLORS.neutral },
          encoding: { y: { field: 'value', type: 'quantitative' }, text: { field: 'label' } },
        }),
      ],
    },
  };
  return renderSpec(options.name ?? 'sweep', options.title ?? 'Pruning sweep', spec as unknown as TopLevelSpec);
}

// ---------------------------------------------------------------------------------------
// Repaired performance

export interface RepairedBarsOptions {
  /** The BadNet's clean test accuracy and ASR, drawn as reference rules. */
  baseline: { accuracy: number; asr: number };
  title?: string;
  name?: string;
}

const SERIES = ['repaired B′: clean accuracy', 'GoodNet G: clean accuracy', 'repaired B′: ASR', 'GoodNet G: ASR'];

/** Test accuracy and ASR of B'_X and G_X per threshold X, one panel per pruning order. */
export async function repairedBars(rows: GoodNetRow[], options: RepairedBarsOptions): Promise<Figure> {
  if (rows.length === 0) throw new GoodnetError('repairedBars: no GoodNet rows to draw');
  const orders = ORDERS.filter((o) => rows.some((r) => r.order === o));
  const values: Record<string, unknown>[] = [];
  for (const r of rows) {
    const common = {
      kind: 'bar',
      panel: ORDER_PANEL[r.order],
      threshold: r.threshold,
      xl: `X = ${r.threshold}|${pct(r.fractionPruned, 0)} pruned`,
    };
    const v = [r.repaired.accuracy, r.goodnet.accuracy, r.repaired.asr, r.goodnet.asr];
    v.forEach((value, i) => values.push({ ...common, series: SERIES[i], value, label: pct(value, 0) }));
  }
  const { accuracy, asr } = options.baseline;
  for (const o of orders) {
    values.push({ kind: 'base', panel: ORDER_PANEL[o], what: 'acc', value: accuracy, label: `BadNet accuracy ${pct(accuracy)}` });
    values.push({ kind: 'base', panel: ORDER_PANEL[o], what: 'asr', value: asr, label: `BadNet ASR ${pct(asr)}` });
  }
  const only = (expr: string) => [{ filter: expr }];
  const x = {
    field: 'xl',
    type: 'ordinal',
    sort: { field: 'threshold', op: 'min' },
    axis: { title: 'repaired at accuracy drop X (points)', labelExpr: "split(datum.label, '|')", labelAngle: 0, labelPadding: 6 },
    scale: { paddingInner: 0.25, paddingOuter: 0.12 },
  };
  const y = { field: 'value', type: 'quantitative', scale: { domain: [0, 1.08], nice: false, clamp: true }, axis: percentAxis('test accuracy / ASR') };
  const xOffset = { field: 'series', type: 'nominal', sort: SERIES, scale: { paddingInner: 0.08 } };
  const spec = {
    title: {
      text: options.title ?? 'Repaired models B′ and GoodNets G on clean and poisoned test data',
      subtitle: `Blue: clean test accuracy (higher is better). Red: attack success rate (lower is better). Dashed: the BadNet B (accuracy ${pct(accuracy)}, ASR ${pct(asr)}).`,
    },
    data: { values },
    facet: { column: { field: 'panel', type: 'nominal', sort: orders.map((o) => ORDER_PANEL[o]), header: { title: null } } },
    resolve: { scale: { x: 'independent', xOffset: 'independent' } },
    spacing: 28,
    padding: 12,
    spec: {
      width: 400,
      height: 280,
      layer: [
        {
          transform: only("datum.kind === 'bar'"),
          mark: { type: 'bar', cornerRadiusEnd: 1.5 },
          encoding: {
            x,
            y,
            xOffset,
            color: {
              field: 'series',
              type: 'nominal',
              scale: { domain: SERIES, range: [COLORS.accuracy, COLORS.accuracyLight, COLORS.asr, COLORS.asrLight] },
              legend: { title: null, columns: 2, symbolType: 'square' },
            },
          },
        },
        {
          transform: only("datum.kind === 'base' && datum.what === 'acc'"),
          mark: { type: 'rule', color: COLORS.accuracy, strokeDash: [5, 4], strokeWidth: 1.3 },
          encoding: { y: { field: 'value', type: 'quantitative' } },
        },
        {
          transform: only("datum.kind === 'base' && datum.what === 'asr'"),
          mark: { type: 'rule', color: COLORS.asr, strokeDash: [5, 4], strokeWidth: 1.3 },
          encoding: { y: { field: 'value', type: 'quantitative' } },
        },
        ...haloText({
          transform: only("datum.kind === 'bar'"),
          mark: { type: 'text', baseline: 'bottom', dy: -2, fontSize: 9, color: '#374151' },
          encoding: { x, xOffset, y: { field: 'value', type: 'quantitative' }, text: { field: 'label' } },
        }),
      ],
    },
    config: { view: { stroke: null } },
  };
  const fig = await renderSpec(options.name ?? 'repaired', options.title ?? 'Repaired performance', spec as unknown as TopLevelSpec);
  return fig;
}

// ---------------------------------------------------------------------------------------
// Dual axis

export interface DualAxisOptions {
  title?: string;
  name?: string;
  /** Threshold picks to mark (default: all). */
  thresholds?: number[];
}

/** One sweep: accuracy on the left axis (blue), ASR on the right axis (red). */
export async function dualAxis(sweep: SweepResult, options: DualAxisOptions = {}): Promise<Figure> {
  if (sweep.steps.length === 0) throw new GoodnetError('dualAxis: the sweep has no steps');
  const height = 280;
  const steps = sweep.steps.map((s) => {
    checkFraction(s.fractionPruned, 'fractionPruned');
    return { x: s.fractionPruned, accuracy: s.accuracy, asr: s.asr, step: s.step };
  });
  const picks = pickRows(sweep, options.thresholds).map((p) => ({ x: p.fractionPruned, label: p.label, ly: height - 8 - p.idx * 15 }));
  const x = { field: 'x', type: 'quantitative', scale: { domain: [0, 1], nice: false }, axis: percentAxis(`share of ${sweep.convLayer} channels pruned`) };
  const dash = DASH[sweep.order];
  const color = { scale: { domain: [METRIC_ACC, METRIC_ASR], range: [COLORS.accuracy, COLORS.asr] }, legend: { title: null, symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolDash: dash } };
  const spec = {
    title: {
      text: options.title ?? `Pruning in ${ORDER_NAME[sweep.order]} order of mean activation`,
      subtitle: `Clean validation accuracy (left axis) and attack success rate (right axis) after each pruned ${sweep.convLayer} channel.`,
    },
    width: 620,
    height,
    padding: 12,
    layer: [
      { data: { values: picks }, mark: { type: 'rule', color: COLORS.rule, strokeDash: [2, 3], strokeWidth: 1.2 }, encoding: { x } },
      ...haloText({
        data: { values: picks },
        mark: { type: 'text', align: 'left', baseline: 'bottom', dx: 3, fontSize: 10, color: '#374151' },
        encoding: { x, y: { value: { expr: 'datum.ly' } }, text: { field: 'label' } },
      }).map((l) => ({ ...l, encoding: { ...(l['encoding'] as object), y: { field: 'ly', type: 'quantitative', scale: null } } })),
      {
        data: { values: steps },
        mark: { type: 'line', strokeWidth: 2.4, strokeDash: dash },
        encoding: {
          x,
          y: {
            field: 'accuracy',
            type: 'quantitative',
            scale: { domain: [0, 1], nice: false },
            axis: percentAxis('clean accuracy', { orient: 'left', titleColor: COLORS.accuracy, labelColor: COLORS.accuracy, domainColor: COLORS.accuracy, tickColor: COLORS.accuracy }),
          },
          color: { datum: METRIC_ACC, ...color },
        },
      },
      {
        data: { values: steps },
        mark: { type: 'line', strokeWidth: 2.4, strokeDash: dash },
        encoding: {
          x,
          y: {
            field: 'asr',
            type: 'quantitative',
            scale: { domain: [0, 1], nice: false },
            axis: percentAxis('attack success rate', { orient: 'right', grid: false, titleColor: COLORS.asr, labelColor: COLORS.asr, domainColor: COLORS.asr, tickColor: COLORS.asr }),
          },
          color: { datum: METRIC_ASR, ...color },
        },
      },
    ],
    resolve: { scale: { y: 'independent' } },
  };
  return renderSpec(options.name ?? `dual-axis-${sweep.order}`, options.title ?? `Accuracy and ASR, ${ORDER_NAME[sweep.order]} order`, spec as unknown as TopLevelSpec);
}

// ---------------------------------------------------------------------------------------
// Activation profile

export interface ActivationProfileOptions {
  /** Sort the bars by mean activation, ascending (default) or descending. */
  order?: PruneOrder;
  /** Channels to draw in the highlight colour (e.g. those pruned in B'_X). */
  highlight?: number[];
  /** Legend text for highlighted channels. */
  highlightLabel?: string;
  title?: string;
  name?: string;
}

/** Mean activation per channel, one bar per channel, sorted, labelled by channel index. */
export async function activationProfile(profile: ActivationProfile, options: ActivationProfileOptions = {}): Promise<Figure> {
  const m = profile.mean;
  if (m.length === 0) throw new GoodnetError('activationProfile: the profile has no channels');
  const order = options.order ?? 'asc';
  const sign = order === 'asc' ? 1 : -1;
  const idx = m.map((_, i) => i).sort((a, b) => sign * (m[a]! - m[b]!) || a - b);
  const hl = new Set(options.highlight ?? []);
  const hlLabel = options.highlightLabel ?? 'highlighted channels';
  const otherLabel = 'other channels';
  const values = idx.map((ch, rank) => ({ channel: String(ch), rank, mean: m[ch], group: hl.has(ch) ? hlLabel : otherLabel }));
  const vertical = m.length > 36;
  const step = Math.max(4, Math.min(24, Math.floor((m.length <= 80 ? 820 : 1000) / m.length)));
  const dormant = m.filter((v) => v <= 1e-6 * Math.max(...m.map(Math.abs), 1e-30)).length;
  const spec = {
    title: {
      text: options.title ?? `Mean activation of the ${profile.channels} ${profile.convLayer} channels`,
      subtitle: `Measured at ${profile.poolLayer} over ${profile.images.toLocaleString('en-US')} clean images, sorted ${order === 'asc' ? 'ascending' : 'descending'}${dormant ? `; ${dormant} channel${dormant === 1 ? '' : 's'} never activate` : ''}.`,
    },
    width: { step },
    height: 240,
    padding: 12,
    data: { values },
    mark: { type: 'bar', cornerRadiusEnd: 1 },
    encoding: {
      x: {
        field: 'channel',
        type: 'ordinal',
        sort: { field: 'rank', op: 'min' },
        scale: { paddingInner: 0.2 },
        axis: {
          title: `${profile.convLayer} channel (index)`,
          labelAngle: vertical ? -90 : 0,
          labelFontSize: step >= 12 ? 10 : step >= 8 ? 8 : 7,
          labelPadding: 4,
          labelOverlap: step < 7 ? 'parity' : false,
          ticks: false,
        },
      },
      y: { field: 'mean', type: 'quantitative', axis: { title: 'mean activation', tickCount: 5 } },
      color: hl.size
        ? { field: 'group', type: 'nominal', scale: { domain: [hlLabel, otherLabel], range: [COLORS.asr, COLORS.bar] }, legend: { title: null, symbolType: 'square' } }
        : { value: COLORS.bar },
    },
  };
  return renderSpec(options.name ?? 'activation-profile', options.title ?? 'Activation profile', spec as unknown as TopLevelSpec);
}

// ---------------------------------------------------------------------------------------
// STRIP entropy histogram

export interface StripHistogramInput {
  /** Entropies of clean inputs. */
  clean: ArrayLike<number>;
  /** Entropies of trojaned inputs (may be empty). */
  poisoned: ArrayLike<number>;
  /** Inputs with entropy below it are flagged. */
  threshold: number;
  /** Number of equal-width bins over [0, largest value] (default 30, as the paper's figure). */
  bins?: number;
  title?: string;
  subtitle?: string;
  name?: string;
}

/**
 * STRIP: the entropy distributions of clean and trojaned inputs, overlaid (share of each
 * set per bin, so sets of different sizes compare), with the threshold as a rule.
 */
export async function stripHistogram(input: StripHistogramInput): Promise<Figure> {
  const { clean, poisoned, threshold } = input;
  if (clean.length + poisoned.length === 0) throw new GoodnetError('stripHistogram: no entropies to draw');
  if (!Number.isFinite(threshold)) throw new GoodnetError('stripHistogram: the threshold is not a finite number');
  const bins = input.bins ?? 30;
  if (!Number.isInteger(bins) || bins < 1) throw new GoodnetError(`stripHistogram: bins must be a positive integer, got ${bins}`);
  let hi = Math.max(threshold, 0);
  for (const xs of [clean, poisoned]) {
    for (let i = 0; i < xs.length; i++) {
      const v = xs[i]!;
      if (!Number.isFinite(v) || v < 0) throw new GoodnetError(`stripHistogram: entropy ${v} is not a finite number >= 0`);
      if (v > hi) hi = v;
    }
  }
  if (hi === 0) hi = 1;
  const width = hi / bins;
  const SET_CLEAN = 'clean inputs';
  const SET_POISONED = 'trojaned inputs';
  const values: Record<string, unknown>[] = [];
  const sets: string[] = [];
  for (const [set, xs] of [[SET_CLEAN, clean], [SET_POISONED, poisoned]] as const) {
    if (xs.length === 0) continue;
    sets.push(set);
    const counts = new Array<number>(bins).fill(0);
    for (let i = 0; i < xs.length; i++) counts[Math.min(bins - 1, Math.floor(xs[i]! / width))]!++;
    counts.forEach((c, b) => values.push({ kind: 'bin', set: `${set} (${xs.length.toLocaleString('en-US')})`, x0: b * width, x1: (b + 1) * width, share: c / xs.length }));
  }
  const labelled = sets.map((set) => `${set} (${(set === SET_CLEAN ? clean : poisoned).length.toLocaleString('en-US')})`);
  const x = { field: 'x0', type: 'quantitative', scale: { domain: [0, hi], nice: false }, axis: { title: 'entropy H (bits), mean over the superimposed copies', tickCount: 8 } };
  const spec = {
    title: {
      text: input.title ?? 'STRIP: entropy of clean and trojaned inputs',
      subtitle: input.subtitle ?? `Inputs left of the threshold (H < ${threshold.toFixed(4)}) are flagged as trojaned.`,
    },
    width: 620,
    height: 280,
    padding: 12,
    layer: [
      {
        data: { values },
        mark: { type: 'bar', opacity: 0.6, binSpacing: 0 },
        encoding: {
          x,
          x2: { field: 'x1' },
          y: { field: 'share', type: 'quantitative', stack: null, axis: { title: 'share of the set', format: '.0%' } },
          y2: { datum: 0 },
          color: {
            field: 'set',
            type: 'nominal',
            scale: { domain: labelled, range: sets.map((s) => (s === SET_CLEAN ? COLORS.accuracy : COLORS.asr)) },
            legend: { title: null, symbolType: 'square' },
          },
        },
      },
      {
        data: { values: [{ t: threshold, label: `threshold ${threshold.toFixed(4)}` }] },
        mark: { type: 'rule', color: COLORS.text, strokeDash: [5, 4], strokeWidth: 1.5 },
        encoding: { x: { field: 't', type: 'quantitative' } },
      },
      ...haloText({
        data: { values: [{ t: threshold, label: `threshold ${threshold.toFixed(4)}` }] },
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, y: 4, fontSize: 10, color: COLORS.text },
        encoding: { x: { field: 't', type: 'quantitative' }, text: { field: 'label' } },
      }),
    ],
  };
  return renderSpec(input.name ?? 'strip-entropy', input.title ?? 'STRIP entropy', spec as unknown as TopLevelSpec);
}

// ---------------------------------------------------------------------------------------
// All of the report's figures at once

export interface ReportFiguresInput {
  profile?: ActivationProfile;
  /** Channels to highlight in the profile (e.g. pruned in B'_X) and their legend text. */
  profileHighlight?: { channels: number[]; label: string };
  sweeps: SweepResult[];
  rows: GoodNetRow[];
  /** The BadNet's clean test accuracy and ASR. */
  baseline: { accuracy: number; asr: number };
  /** Clean validation accuracy of the unpruned BadNet (default: step 0 of the sweeps). */
  baselineValidAccuracy?: number;
  cleanSamples?: Omit<SampleGridInput, 'name'>;
  poisonedSamples?: Omit<SampleGridInput, 'name'>;
}

/**
 * The figures the report places by name: samples-clean, samples-poisoned,
 * activation-profile, sweep, repaired, dual-axis-asc, dual-axis-desc (those it has data for).
 */
export async function reportFigures(input: ReportFiguresInput): Promise<Figure[]> {
  const figs: Figure[] = [];
  if (input.cleanSamples) figs.push(await sampleGrid({ ...input.cleanSamples, name: 'samples-clean' }));
  if (input.poisonedSamples) figs.push(await sampleGrid({ ...input.poisonedSamples, name: 'samples-poisoned' }));
  if (input.profile) {
    const h = input.profileHighlight;
    figs.push(await activationProfile(input.profile, h ? { highlight: h.channels, highlightLabel: h.label } : {}));
  }
  if (input.sweeps.length) {
    figs.push(await sweepCurves(input.sweeps, input.baselineValidAccuracy !== undefined ? { baselineAccuracy: input.baselineValidAccuracy } : {}));
  }
  if (input.rows.length) figs.push(await repairedBars(input.rows, { baseline: input.baseline }));
  for (const o of ORDERS) {
    const s = input.sweeps.find((x) => x.order === o);
    if (s && s.steps.length) figs.push(await dualAxis(s));
  }
  return figs;
}
