import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { GoodnetError } from '../src/errors.js';
import {
  activationProfile,
  dualAxis,
  repairedBars,
  sampleGrid,
  sweepCurves,
  takeFigureWarnings,
  writeFigure,
  type Figure,
} from '../src/report/figures.js';
import { escapeHtml, formatSeconds, goodnetCsv, markdownGoodNetTable, renderReport, KNOWN_FIGURES } from '../src/report/html.js';
import { tempDir } from './helpers.js';
import { BASELINE, syntheticFigures, syntheticReportData, syntheticResults } from './report_fixtures.js';

const res = syntheticResults();
let figuresOnce: Promise<Figure[]> | undefined;
const figures = () => (figuresOnce ??= syntheticFigures(res));

/** Tags balance and nest (a light well-formedness check: no XML parser among the deps). */
function assertWellFormed(svg: string): void {
  assert.ok(svg.startsWith('<svg'), 'starts with <svg');
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g;
  let m: RegExpExecArray | null;
  while ((m = tag.exec(svg))) {
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the open element`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, [], 'every element closed');
  assert.ok(!/<[^>]*<[^>]*>/.test(svg.replace(/"[^"]*"/g, '""')), 'no stray < inside a tag');
}

function textOf(svg: string): string {
  return [...svg.matchAll(/<text[^>]*>([\s\S]*?)<\/text>/g)].map((m) => m[1]!.replace(/<[^>]+>/g, ' ')).join(' | ');
}

interface Decoded {
  width: number;
  height: number;
  data: Buffer;
}

function decode(png: Uint8Array): Decoded {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  const img = PNG.sync.read(Buffer.from(png));
  return { width: img.width, height: img.height, data: img.data };
}

function countPixels(img: Decoded, pred: (r: number, g: number, b: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < img.data.length; i += 4) if (pred(img.data[i]!, img.data[i + 1]!, img.data[i + 2]!)) n++;
  return n;
}

const isBlue = (r: number, g: number, b: number) => b > 150 && r < 90 && g > 80 && g < 140; // #2f6db5
const isRed = (r: number, g: number, b: number) => r > 180 && g < 100 && b < 120; // #d1495b

function assertGoodPng(fig: Figure, minW = 300, minH = 150): Decoded {
  const img = decode(fig.png);
  assert.ok(img.width >= minW && img.width <= 5000, `width ${img.width}`);
  assert.ok(img.height >= minH && img.height <= 5000, `height ${img.height}`);
  const svgW = Number(/<svg[^>]*\swidth="([\d.]+)"/.exec(fig.svg)?.[1]);
  assert.equal(img.width, Math.round(svgW * 2), 'PNG at 2x the SVG size');
  const nonWhite = countPixels(img, (r, g, b) => r < 240 || g < 240 || b < 240);
  assert.ok(nonWhite > img.width * img.height * 0.01, `not blank (${nonWhite} non-white pixels)`);
  return img;
}

function assertFigure(fig: Figure, name: string, texts: string[]): Decoded {
  assert.equal(fig.name, name);
  assert.ok(fig.title.length > 0);
  assertWellFormed(fig.svg);
  const t = textOf(fig.svg);
  for (const s of texts) assert.ok(t.includes(s), `SVG text has '${s}'`);
  assert.ok(fig.svg.includes('font-family="DejaVu Sans'), 'text set in DejaVu Sans');
  return assertGoodPng(fig);
}

test('sampleGrid draws the images themselves into the PNG (RGB, upscaled)', async () => {
  const red = new Uint8Array([255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0]);
  const blueish = new Uint8Array(12).fill(0).map((_, i) => (i % 3 === 2 ? 255 : 0));
  const fig = await sampleGrid({
    images: new Uint8Array([...red, ...blueish]),
    n: 2,
    height: 2,
    width: 2,
    channels: 3,
    captions: ['true: 1 / BadNet: 0', 'second <script>'],
    columns: 2,
    title: 'Two tiny images',
    name: 'tiny',
  });
  assert.equal(fig.name, 'tiny');
  assertWellFormed(fig.svg);
  assert.ok(fig.svg.includes('data:image/png;base64,'), 'images embedded as PNG data URLs');
  assert.ok(textOf(fig.svg).includes('true: 1 / BadNet: 0'));
  assert.ok(!fig.svg.includes('<script'), 'caption text escaped');
  const img = decode(fig.png);
  const red2 = countPixels(img, (r, g, b) => r === 255 && g === 0 && b === 0);
  const blue2 = countPixels(img, (r, g, b) => r === 0 && g === 0 && b === 255);
  // A 2x2 image shown ~96 px wide at 2x: tens of thousands of pure pixels each.
  assert.ok(red2 > 20000, `red pixels: ${red2}`);
  assert.ok(blue2 > 20000, `blue pixels: ${blue2}`);
});

test('sampleGrid: grey images and the fixture grids', async () => {
  const black = new Uint8Array(4 * 4); // one 4x4 black grey image
  const fig = await sampleGrid({ images: black, n: 1, height: 4, width: 4, channels: 1, captions: ['0: T-shirt/top'], columns: 4, title: 'Grey' });
  const img = decode(fig.png);
  assert.ok(countPixels(img, (r, g, b) => r === 0 && g === 0 && b === 0) > 15000, 'black square drawn');
  const [clean, poisoned] = (await figures()).filter((f) => f.name.startsWith('samples'));
  assertFigure(clean!, 'samples-clean', ['Clean test images', '0: T-shirt/top', '9: Ankle boot']);
  const p = assertFigure(poisoned!, 'samples-poisoned', ['true: 1 Trouser', 'BadNet: 0']);
  assert.ok(countPixels(p, isRed) > 100, 'emphasised captions in red');
});

test('sampleGrid refuses inconsistent input', async () => {
  const base = { n: 2, height: 2, width: 2, channels: 1, captions: ['a', 'b'], columns: 2, title: 't' };
  await assert.rejects(sampleGrid({ ...base, images: new Uint8Array(7) }), GoodnetError);
  await assert.rejects(sampleGrid({ ...base, images: new Uint8Array(8), captions: ['a'] }), GoodnetError);
  await assert.rejects(sampleGrid({ ...base, images: new Uint8Array(16), channels: 2 }), GoodnetError);
});

test('sweepCurves: both orders, both metrics, threshold marks', async () => {
  const fig = await sweepCurves(res.sweeps, { baselineAccuracy: BASELINE.validAccuracy });
  const img = assertFigure(fig, 'sweep', [
    'share of conv_3 channels pruned',
    'validation accuracy / ASR',
    'clean accuracy',
    'attack success rate',
    'ascending',
    'descending',
    'Ascending order',
    'Descending order',
    'X=2',
    'X=10',
    'BadNet accuracy 90.6%',
    '100%',
  ]);
  assert.ok(countPixels(img, isBlue) > 500, 'accuracy drawn in blue');
  assert.ok(countPixels(img, isRed) > 500, 'ASR drawn in red');
  assert.ok(fig.svg.includes('stroke-dasharray="7,4"'), 'descending order dashed');
  // Only the chosen thresholds are marked.
  const only4 = await sweepCurves(res.sweeps.slice(0, 1), { thresholds: [4] });
  const t = textOf(only4.svg);
  assert.ok(t.includes('X=4') && !t.includes('X=2') && !t.includes('X=10'));
  assert.ok(!t.includes('Descending order'));
  await assert.rejects(sweepCurves([]), GoodnetError);
});

test('repairedBars: B′ and G per threshold, per order, with the BadNet as reference', async () => {
  const fig = await repairedBars(res.rows, { baseline: { accuracy: BASELINE.testAccuracy, asr: BASELINE.testAsr } });
  const img = assertFigure(fig, 'repaired', [
    'repaired B′: clean accuracy',
    'repaired B′: ASR',
    'GoodNet G: clean accuracy',
    'GoodNet G: ASR',
    'X = 2',
    'X = 10',
    'test accuracy / ASR',
    'Ascending order',
    'Descending order',
    'accuracy 90.5%',
  ]);
  assert.ok(countPixels(img, isBlue) > 2000 && countPixels(img, isRed) > 2000, 'bars in the palette');
  const asc = await repairedBars(res.rows.filter((r) => r.order === 'asc'), { baseline: { accuracy: 0.9, asr: 1 } });
  assert.ok(!textOf(asc.svg).includes('Descending order'));
  await assert.rejects(repairedBars([], { baseline: { accuracy: 0.9, asr: 1 } }), GoodnetError);
});

test('dualAxis: accuracy left in blue, ASR right in red', async () => {
  for (const s of res.sweeps) {
    const fig = await dualAxis(s);
    const img = assertFigure(fig, `dual-axis-${s.order}`, ['clean accuracy', 'attack success rate', 'share of conv_3 channels pruned', s.order === 'asc' ? 'ascending' : 'descending']);
    assert.ok(countPixels(img, isBlue) > 500 && countPixels(img, isRed) > 500);
    // Two y axes, coloured like their lines.
    assert.ok(/fill="#2f6db5"[^>]*>clean accuracy</.test(fig.svg), 'left axis title in the accuracy colour');
    assert.ok(/fill="#d1495b"[^>]*>attack success rate</.test(fig.svg), 'right axis title in the ASR colour');
    assert.equal((fig.svg.match(/role-axis-title/g) ?? []).length >= 3, true, 'x axis and two y axes titled');
  }
});

test('activationProfile: one bar per channel, sorted, highlighted channels', async () => {
  const pick = res.sweeps[0]!.picks[1]!;
  const fig = await activationProfile(res.profile, { highlight: pick.pruned, highlightLabel: 'pruned in B′' });
  const img = assertFigure(fig, 'activation-profile', ['conv_3 channel (index)', 'mean activation', 'pruned in B′', 'other channels', 'pool_3', '59']);
  assert.equal((fig.svg.match(/aria-roledescription="bar"/g) ?? []).length, 60, '60 bars');
  assert.ok(countPixels(img, isRed) > 500, 'highlighted bars in red');
  // Bars left to right follow ascending mean activation: the axis labels come in sorted order.
  const labels = [...fig.svg.matchAll(/role-axis-label[\s\S]*?<\/g>/g)][0]![0];
  const order = [...labels.matchAll(/>(\d+)<\/text>/g)].map((m) => Number(m[1]));
  const means = order.map((c) => res.profile.mean[c]!);
  assert.equal(order.length, 60);
  assert.deepEqual(means, [...means].sort((a, b) => a - b));
  const plain = await activationProfile(res.profile, { order: 'desc' });
  assert.ok(!textOf(plain.svg).includes('other channels'), 'no legend without highlight');
});

test('figures render fast after the first, without vega warnings', async (t) => {
  await figures();
  takeFigureWarnings();
  const t0 = performance.now();
  await sweepCurves(res.sweeps);
  await dualAxis(res.sweeps[0]!);
  await repairedBars(res.rows, { baseline: { accuracy: 0.9, asr: 1 } });
  const ms = (performance.now() - t0) / 3;
  t.diagnostic(`mean render time ${ms.toFixed(0)} ms per figure (SVG + PNG)`);
  assert.ok(ms < 1500, `${ms} ms per figure`);
  assert.deepEqual(takeFigureWarnings(), []);
});

test('writeFigure writes <name>.svg and <name>.png atomically, replacing old files', async () => {
  const { dir, cleanup } = tempDir('goodnet-fig-');
  try {
    const fig = (await figures()).find((f) => f.name === 'sweep')!;
    writeFileSync(join(dir, 'sweep.svg'), 'old');
    const out = await writeFigure(join(dir, 'figs'), fig);
    assert.equal(readFileSync(out.svg, 'utf8'), fig.svg);
    assert.deepEqual(new Uint8Array(readFileSync(out.png)), fig.png);
    await writeFigure(dir, fig);
    assert.equal(readFileSync(join(dir, 'sweep.svg'), 'utf8'), fig.svg);
    await assert.rejects(writeFigure(dir, { ...fig, name: '../evil' }), GoodnetError);
    assert.ok(!existsSync(join(dir, '..', 'evil.svg')));
  } finally {
    cleanup();
  }
});

// ---------------------------------------------------------------------------------------
// HTML

test('renderReport: every figure, both tables, no external references', async () => {
  const figs = await figures();
  const extra: Figure = { ...figs.find((f) => f.name === 'sweep')!, name: 'fine-pruning', title: 'Fine-pruning extra' };
  const data = await syntheticReportData({
    figures: [...figs, extra],
    extraSections: [{ title: 'Fine-pruning', html: `<p>${escapeHtml('later <b>')}</p>` }],
  });
  const html = renderReport(data);
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.ok(!/https?:\/\//i.test(html), 'no http(s):// anywhere');
  assert.ok(!/<script/i.test(html), 'no scripts');
  assert.ok(!/<link\b/i.test(html), 'no linked resources');
  for (const m of html.matchAll(/\s(?:src|href)="([^"]*)"/g)) {
    assert.ok(m[1]!.startsWith('data:') || m[1]!.startsWith('#'), `local reference: ${m[1]!.slice(0, 40)}`);
  }
  for (const f of data.figures) assert.ok(html.includes(`id="figure-${f.name}"`), `figure ${f.name} placed`);
  for (const name of KNOWN_FIGURES) assert.ok(html.includes(`id="figure-${name}"`));
  assert.ok(html.includes('<h2>Other figures</h2>') && html.indexOf('id="figure-fine-pruning"') > html.indexOf('<h2>Other figures</h2>'));
  assert.equal((html.match(/<img /g) ?? []).length, 2, 'sample grids as PNG');
  assert.equal((html.match(/<svg /g) ?? []).length, data.figures.length - 2, 'charts as inline SVG');
  // Ids are unique across the inline SVGs (vega numbers its clip paths per process).
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length, 'unique ids');
  for (const m of html.matchAll(/url\(#([^)]+)\)/g)) assert.ok(ids.includes(m[1]), `url(#${m[1]}) resolves`);
  // Tables 1 and 2 with their rows.
  assert.ok(html.includes('Table 1.') && html.includes('Table 2.'));
  for (const r of data.goodnet) assert.ok(html.includes(`${(r.goodnet.detectionRate * 100).toFixed(2)}%`));
  for (const s of ['false-alarm rate', 'detection rate', 'fraction pruned', 'clean test accuracy']) assert.ok(html.includes(s), s);
  // Sections, commands, footer.
  for (const s of ['How this was made', 'The BadNet B', 'Activation profile', 'Sample images', 'Pruning sweep', 'Repaired models and GoodNets', 'Accuracy against ASR', 'Fine-pruning', 'Versions', 'Timings', 'Input files']) {
    assert.ok(html.includes(s), `section ${s}`);
  }
  assert.ok(html.includes('later &lt;b&gt;'));
  assert.ok(html.includes('npx goodnet attack --out lab'));
  assert.ok(html.includes(data.data[1]!.sha256) && html.includes(data.model.sha256));
  assert.ok(html.includes(process.version));
  assert.ok(html.includes('6 min 53 s'), 'timings formatted');
  assert.ok(html.includes('90.52%') && html.includes('99.90%'), 'BadNet numbers');
});

test('renderReport escapes user-controlled text', async () => {
  const evil = 'models/<script>alert(1)</script>"\'&.h5';
  const data = await syntheticReportData({
    figures: [],
    title: 'Report <img src=x onerror=alert(1)>',
    commands: ['goodnet eval -m "<script>x</script>"'],
    model: { path: evil, sha256: 'ab', format: 'keras-h5', inputShape: [null, 28, 28, 1], numClasses: 10 },
    data: [{ role: '<b>clean</b>', path: evil, sha256: 'cd', images: 5 }],
    notes: ['<i>note</i>'],
    versions: { '<v>': '<1>' },
  });
  const html = renderReport(data);
  assert.ok(!/<script/i.test(html));
  assert.ok(!html.includes('<img src=x'));
  assert.ok(!html.includes('<b>clean') && !html.includes('<i>note') && !html.includes('<v>'));
  assert.ok(html.includes('models/&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;.h5'));
  assert.ok(html.includes('? × 28 × 28 × 1'));
  assert.ok(!html.includes('<h2>Other figures'), 'no empty sections');
});

test('renderReport shows an unsafe SVG as its PNG instead of inlining it', async () => {
  const fig = (await figures()).find((f) => f.name === 'sweep')!;
  const bad: Figure = { ...fig, svg: fig.svg.replace('<g', '<script>alert(1)</script><g') };
  const html = renderReport(await syntheticReportData({ figures: [bad] }));
  assert.ok(!/<script/i.test(html));
  assert.ok(html.includes('id="figure-sweep"><img class="figure-img" src="data:image/png;base64,'));
});

test('markdownGoodNetTable and goodnetCsv', () => {
  const md = markdownGoodNetTable(res.rows, 'asc');
  const lines = md.split('\n');
  assert.equal(lines.length, 2 + 3);
  assert.ok(lines[0]!.includes("B'_X ASR") && lines[0]!.includes('false alarm'));
  assert.ok(lines[2]!.startsWith('|  2% |') || lines[2]!.includes('2%'));
  const r = res.rows.find((x) => x.order === 'asc' && x.threshold === 10)!;
  assert.ok(lines[4]!.includes(`${(r.repaired.asr * 100).toFixed(2)}%`));
  assert.equal(markdownGoodNetTable(res.rows, 'desc').split('\n').length, 5);

  const csv = goodnetCsv(res.rows);
  const rows = csv.trimEnd().split('\n');
  assert.equal(rows[0], 'order,threshold,fraction_pruned,repaired_accuracy,repaired_asr,goodnet_accuracy,goodnet_asr,detection_rate,false_alarm_rate');
  assert.equal(rows.length, res.rows.length + 1);
  const cells = rows[1]!.split(',');
  const first = res.rows[0]!;
  assert.equal(cells[0], first.order);
  assert.equal(Number(cells[2]), first.fractionPruned);
  assert.equal(Number(cells[7]), first.goodnet.detectionRate);
  assert.ok(csv.endsWith('\n'));
  assert.equal(formatSeconds(0.4215), '0.42 s');
  assert.equal(formatSeconds(4000), '1 h 07 min');
  assert.equal(formatSeconds(119.7), '2 min 00 s');
  assert.equal(formatSeconds(3599.9), '1 h 00 min');
});
