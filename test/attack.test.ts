import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { tempDir } from './helpers.js';
import { GoodnetError } from '../src/errors.js';
import { clearH5Times, h5Checksum, h5wasm, openH5 } from '../src/io/hdf5.js';
import { openDataset } from '../src/io/dataset.js';
import { decodeImageRgba, encodePng } from '../src/io/images.js';
import {
  builtinCachePath,
  cacheDir,
  convertJsonClassFiles,
  FASHION_MNIST_CLASSES,
  loadBuiltin,
  loadUserData,
} from '../src/attack/builtin_data.js';
import { classCounts, defaultSplitSizes, stratifiedSplit, subset } from '../src/attack/split.js';
import { createTrigger, parseTriggerSpec, triggerSpecFromOptions, type Trigger } from '../src/attack/triggers.js';
import { makePoisonedSet, poisonTraining } from '../src/attack/poison.js';
import { writeCsawData, writeCsawSet } from '../src/attack/csaw_layout.js';
import type { LabelledImages } from '../src/attack/types.js';

const tmp = tempDir('goodnet-attack-');
process.on('exit', tmp.cleanup);
const T = tmp.dir;

/** One-line GoodnetError whose message matches. */
function throwsOneLine(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof GoodnetError, `expected GoodnetError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'message is one line');
    assert.match(err.message, re);
    return true;
  });
}

async function rejectsOneLine(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof GoodnetError, `expected GoodnetError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'));
    assert.match(err.message, re);
    return true;
  });
}

/** Deterministic synthetic images: value = (seed + 7*i) % 251 (never 255 or 0 patterns). */
function synthetic(n: number, h: number, w: number, c: number, labels: number[], seed = 3): LabelledImages {
  const images = new Uint8Array(n * h * w * c);
  for (let i = 0; i < images.length; i++) images[i] = (seed + 7 * i) % 251;
  return { name: 'synth', images, labels: Int32Array.from(labels), n, height: h, width: w, channels: c };
}

function allSame(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Built-in data

test('converter: nested-bytes and flat-unit JSON, empty entries skipped, counts checked', () => {
  const d = join(T, 'mini');
  mkdirSync(d, { recursive: true });
  const img = (v: number) => Array.from({ length: 4 }, (_, p) => (v + p) % 256); // 2x2
  writeFileSync(join(d, 'n0.json'), JSON.stringify({ data: [img(0), [], img(10)] }));
  writeFileSync(join(d, 'n1.json'), JSON.stringify({ data: [img(250)] }));
  const nb = convertJsonClassFiles([join(d, 'n0.json'), join(d, 'n1.json')], {
    name: 'mini',
    encoding: 'nested-bytes',
    height: 2,
    width: 2,
    expected: 3,
  });
  assert.equal(nb.n, 3);
  assert.deepEqual([...nb.labels], [0, 0, 1]);
  assert.deepEqual([...nb.images], [...img(0), ...img(10), ...img(250)]);
  assert.equal(nb.channels, 1);

  // flat-unit: v/255 rounded to 3 decimals comes back exactly
  const bytes = [0, 1, 127, 128, 200, 254, 255, 3];
  writeFileSync(join(d, 'f0.json'), JSON.stringify({ data: bytes.slice(0, 4).map((b) => Number((b / 255).toFixed(3))) }));
  writeFileSync(join(d, 'f1.json'), JSON.stringify({ data: bytes.slice(4).map((b) => Number((b / 255).toFixed(3))) }));
  const fu = convertJsonClassFiles([join(d, 'f0.json'), join(d, 'f1.json')], {
    name: 'mini',
    encoding: 'flat-unit',
    height: 2,
    width: 2,
  });
  assert.deepEqual([...fu.images], bytes);
  assert.deepEqual([...fu.labels], [0, 1]);

  throwsOneLine(
    () => convertJsonClassFiles([join(d, 'n0.json')], { name: 'mini', encoding: 'nested-bytes', height: 2, width: 2, expected: 70000 }),
    /found 2 images .* expected 70000/,
  );
  writeFileSync(join(d, 'bad.json'), JSON.stringify({ data: [[0, 1, 2, 300]] }));
  throwsOneLine(
    () => convertJsonClassFiles([join(d, 'bad.json')], { name: 'mini', encoding: 'nested-bytes', height: 2, width: 2 }),
    /bad\.json: image 0 pixel 3 is 300/,
  );
  writeFileSync(join(d, 'notjson.json'), '{"data": [');
  throwsOneLine(
    () => convertJsonClassFiles([join(d, 'notjson.json')], { name: 'mini', encoding: 'flat-unit', height: 2, width: 2 }),
    /notjson\.json: not valid JSON/,
  );
});

test('cache dir: GOODNET_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache', () => {
  assert.equal(cacheDir({ GOODNET_CACHE_DIR: '/x/y', XDG_CACHE_HOME: '/z' }), '/x/y');
  assert.equal(cacheDir({ XDG_CACHE_HOME: '/z' }), '/z/goodnet');
  assert.match(cacheDir({}), /\.cache[/\\]goodnet$/);
});

test('MNIST: converted once to the cache, then read from it; a damaged cache is rebuilt', async () => {
  const cache = join(T, 'cache-mnist');
  const logs: string[] = [];
  const a = await loadBuiltin('mnist', { cacheDir: cache, log: (l) => logs.push(l) });
  assert.equal(a.n, 10000);
  assert.equal(a.images.length, 10000 * 784);
  assert.deepEqual([a.height, a.width, a.channels], [28, 28, 1]);
  assert.equal(classCounts(a.labels).length, 10);
  const file = builtinCachePath('mnist', { cacheDir: cache });
  assert.match(file, /mnist-1\.1\.0\.bin$/);
  assert.ok(existsSync(file));
  assert.equal(statSync(file).size, 64 + 10000 * 785);
  assert.ok(logs.some((l) => l.startsWith('converting mnist')));

  logs.length = 0;
  const b = await loadBuiltin('mnist', { cacheDir: cache, log: (l) => logs.push(l) });
  assert.equal(logs.length, 0, 'second load reads the cache');
  assert.ok(allSame(a.images, b.images) && allSame(a.labels, b.labels));

  const buf = readFileSync(file);
  buf[1000] = buf[1000]! ^ 0xff;
  writeFileSync(file, buf);
  const c = await loadBuiltin('mnist', { cacheDir: cache, log: (l) => logs.push(l) });
  assert.ok(logs.some((l) => /checksum mismatch; rebuilding/.test(l)));
  assert.ok(allSame(a.images, c.images));
});

test('Fashion-MNIST: 70,000 images, 7,000 per class; first conversion and cached load timed', async (t) => {
  const cache = join(T, 'cache-fashion');
  let t0 = performance.now();
  const a = await loadBuiltin('fashion-mnist', { cacheDir: cache });
  const first = performance.now() - t0;
  t0 = performance.now();
  const b = await loadBuiltin('fashion-mnist', { cacheDir: cache });
  const cached = performance.now() - t0;
  t.diagnostic(`fashion-mnist first conversion ${first.toFixed(0)} ms, cached load ${cached.toFixed(0)} ms`);
  assert.equal(a.n, 70000);
  assert.deepEqual(classCounts(a.labels), Array(10).fill(7000));
  assert.deepEqual(a.classNames, [...FASHION_MNIST_CLASSES]);
  assert.deepEqual(b.classNames, [...FASHION_MNIST_CLASSES]);
  assert.ok(allSame(a.images, b.images));
  assert.ok(cached < 1000, `cached load took ${cached} ms`);
  // First image of class 0 as in the package JSON (it starts 0,0,0,0,0,0,0,9,8,0,0,34,29).
  assert.deepEqual([...a.images.subarray(0, 13)], [0, 0, 0, 0, 0, 0, 0, 9, 8, 0, 0, 34, 29]);
});

// ---------------------------------------------------------------------------------------
// Split

test('split: default sizes', () => {
  assert.deepEqual(defaultSplitSizes(70000), { train: 50000, valid: 10000, test: 10000 });
  assert.deepEqual(defaultSplitSizes(10000), { train: 7000, valid: 1500, test: 1500 });
});

test('split: deterministic, disjoint, stratified', () => {
  // Unbalanced 3-class labels, 1000 images.
  const labels: number[] = [];
  for (let i = 0; i < 1000; i++) labels.push(i % 10 < 5 ? 0 : i % 10 < 8 ? 1 : 2);
  const a = stratifiedSplit(labels, { seed: 42, train: 700, valid: 150, test: 150 });
  const b = stratifiedSplit(labels, { seed: 42, train: 700, valid: 150, test: 150 });
  const c = stratifiedSplit(labels, { seed: 43, train: 700, valid: 150, test: 150 });
  assert.ok(allSame(a.train, b.train) && allSame(a.valid, b.valid) && allSame(a.test, b.test));
  assert.ok(!allSame(a.train, c.train));
  assert.ok(!allSame(a.test, c.test));
  const seen = new Set<number>();
  for (const part of [a.train, a.valid, a.test]) for (const i of part) {
    assert.ok(!seen.has(i), `index ${i} in two splits`);
    seen.add(i);
  }
  assert.equal(seen.size, 1000);
  const whole = classCounts(labels);
  for (const [part, size] of [[a.train, 700], [a.valid, 150], [a.test, 150]] as const) {
    assert.equal(part.length, size);
    classCounts(labels, part).forEach((cnt, k) => {
      assert.ok(Math.abs(cnt - (size * whole[k]!) / 1000) < 1, `class ${k}: ${cnt} of ${size}`);
    });
  }
  // Sizes that leave a remainder; string seeds.
  const d = stratifiedSplit(labels, { seed: 'x', valid: 33, test: 17 });
  assert.deepEqual(d.sizes, { train: 950, valid: 33, test: 17 });
  classCounts(labels, d.valid).forEach((cnt, k) => assert.ok(Math.abs(cnt - (33 * whole[k]!) / 1000) < 1));
});

test('split: bad sizes and one-class data', () => {
  const labels = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
  throwsOneLine(() => stratifiedSplit(labels, { seed: 1, train: 8, valid: 2, test: 2 }), /exceed the 10 images/);
  throwsOneLine(() => stratifiedSplit(labels, { seed: 1, train: 0 }), /training size must be an integer >= 1/);
  throwsOneLine(() => stratifiedSplit(labels, { seed: 1, valid: -1 }), /validation size/);
  throwsOneLine(() => stratifiedSplit([3, 3, 3], { seed: 1 }), /^data set has only one class; a backdoor needs at least two$/);
});

// ---------------------------------------------------------------------------------------
// Triggers

test('patch trigger: corners, margin, checkerboard values, pixel for pixel', () => {
  const h = 8, w = 10;
  for (const c of [1, 3]) {
    for (const [corner, top, left] of [['br', 8 - 1 - 3, 10 - 1 - 3], ['bl', 4, 1], ['tr', 1, 6], ['tl', 1, 1]] as const) {
      const trig = createTrigger({ kind: 'patch', size: 3, corner, margin: 1 });
      const d = synthetic(2, h, w, c, [0, 1]);
      const out = trig.apply(d.images.slice(), 2, h, w, c);
      for (let r = 0; r < 2; r++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) for (let ch = 0; ch < c; ch++) {
        const q = ((r * h + i) * w + j) * c + ch;
        const inside = i >= top && i < top + 3 && j >= left && j < left + 3;
        const want = inside ? ((i - top + j - left) % 2 === 0 ? 255 : 0) : d.images[q];
        assert.equal(out[q], want, `${corner} c=${c} r=${r} (${i},${j},${ch})`);
      }
    }
  }
  // Defaults: 4 px, br, margin 1, checkerboard; white and solid.
  const def = createTrigger({ kind: 'patch' });
  assert.deepEqual(def.describe(), { kind: 'patch', size: 4, corner: 'br', margin: 1, pattern: 'checkerboard' });
  const l = def.layer(28, 28, 1);
  assert.equal(l.weight.reduce((a, b) => a + b, 0), 16);
  assert.equal(l.weight[23 * 28 + 23], 1);
  assert.equal(l.pattern[23 * 28 + 23], 255);
  assert.equal(l.pattern[23 * 28 + 24], 0);
  assert.equal(l.weight[27 * 28 + 27], 0, 'margin row/column untouched');
  const white = createTrigger({ kind: 'patch', pattern: 'white', size: 2, corner: 'tl', margin: 0 });
  const img = white.apply(new Uint8Array(9), 1, 3, 3, 1);
  assert.deepEqual([...img], [255, 255, 0, 255, 255, 0, 0, 0, 0]);
  const solid = createTrigger('patch:pattern=solid,value=7,size=1,corner=tr,margin=0');
  assert.deepEqual([...solid.apply(new Uint8Array(4), 1, 2, 2, 1)], [0, 7, 0, 0]);
});

test('blend trigger: x\' = round((1-alpha) x + alpha p); seeded pattern; user image resized nearest', () => {
  const h = 6, w = 5, c = 3;
  const trig = createTrigger({ kind: 'blend', alpha: 0.25, seed: 9 });
  const d = synthetic(3, h, w, c, [0, 1, 0]);
  const out = trig.apply(d.images.slice(), 3, h, w, c);
  const p = trig.layer(h, w, c).pattern;
  for (let k = 0; k < out.length; k++) {
    assert.equal(out[k], Math.round(0.75 * d.images[k]! + 0.25 * p[k % (h * w * c)]!));
  }
  assert.ok(allSame(p, createTrigger({ kind: 'blend', alpha: 0.25, seed: 9 }).layer(h, w, c).pattern), 'same seed, same pattern');
  assert.ok(!allSame(p, createTrigger({ kind: 'blend', alpha: 0.25, seed: 10 }).layer(h, w, c).pattern));
  assert.equal(createTrigger({ kind: 'blend' }).describe().alpha, 0.1);

  // A 2x2 RGB image blended onto 4x4 grey images: nearest resize, luminance conversion.
  const src = join(T, 'blend.png');
  writeFileSync(src, encodePng([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255], 2, 2, 3));
  const bi = createTrigger({ kind: 'blend', alpha: 1, image: src });
  const grey = [76, 150, 29, 255]; // round(.299*255), round(.587*255), round(.114*255), 255
  const got = bi.apply(new Uint8Array(16).fill(9), 1, 4, 4, 1);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) {
    assert.equal(got[i * 4 + j], grey[Math.floor(i / 2) * 2 + Math.floor(j / 2)]);
  }
});

test('image trigger: alpha-composited at (x, y); trigger.png shows it', () => {
  // 2x3 RGBA trigger: opaque red, half-transparent green, fully transparent, ...
  const rgba = [255, 0, 0, 255, 0, 255, 0, 128, 9, 9, 9, 0, 0, 0, 255, 255, 255, 255, 255, 64, 10, 20, 30, 200];
  const file = join(T, 'glasses.png');
  writeFileSync(file, encodePng(rgba, 3, 2, 4));
  assert.equal(decodeImageRgba(file).hasAlpha, true);
  const trig = createTrigger({ kind: 'image', image: file, x: 2, y: 1 });
  const h = 4, w = 6, c = 3;
  const d = synthetic(2, h, w, c, [0, 1]);
  const out = trig.apply(d.images.slice(), 2, h, w, c);
  for (let r = 0; r < 2; r++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) for (let ch = 0; ch < c; ch++) {
    const q = ((r * h + i) * w + j) * c + ch;
    const ti = i - 1, tj = j - 2;
    let want = d.images[q]!;
    if (ti >= 0 && ti < 2 && tj >= 0 && tj < 3) {
      const k = (ti * 3 + tj) * 4;
      const A = rgba[k + 3]!;
      want = Math.round(((255 - A) * d.images[q]! + A * rgba[k + ch]!) / 255);
    }
    assert.equal(out[q], want, `r=${r} (${i},${j},${ch})`);
  }
  // trigger.png: full image size, RGBA, transparent outside the pasted image.
  const png = PNG.sync.read(trig.png(h, w, c));
  assert.deepEqual([png.width, png.height], [w, h]);
  assert.equal(png.data[3], 0, 'top-left transparent');
  const at = (1 * w + 2) * 4;
  assert.deepEqual([...png.data.subarray(at, at + 4)], [255, 0, 0, 255]);
  const at2 = (1 * w + 3) * 4;
  assert.deepEqual([...png.data.subarray(at2, at2 + 4)], [0, 255, 0, 128]);
  const d2 = trig.describe();
  assert.equal(d2.kind, 'image');
  assert.equal(d2.x, 2);
  assert.equal(d2.imageWidth, 3);
  assert.doesNotThrow(() => JSON.stringify(d2));
  // Patch trigger.png: 4x4 square opaque at bottom-right with margin 1.
  const pp = PNG.sync.read(createTrigger({ kind: 'patch' }).png(28, 28, 1));
  assert.equal(pp.data[(23 * 28 + 23) * 4 + 3], 255);
  assert.equal(pp.data[(23 * 28 + 23) * 4], 255);
  assert.equal(pp.data[(23 * 28 + 24) * 4], 0);
  assert.equal(pp.data[(22 * 28 + 23) * 4 + 3], 0);
});

test('trigger specs: string form and CLI options', () => {
  assert.deepEqual(parseTriggerSpec('patch:size=3,corner=tl'), { kind: 'patch', size: 3, corner: 'tl', margin: 1, pattern: 'checkerboard' });
  assert.deepEqual(parseTriggerSpec('blend:alpha=0.2,seed=5'), { kind: 'blend', alpha: 0.2, seed: 5 });
  assert.deepEqual(
    triggerSpecFromOptions({ trigger: 'patch', size: '4', corner: 'br' }),
    { kind: 'patch', size: 4, corner: 'br', margin: 1, pattern: 'checkerboard' },
  );
  assert.deepEqual(triggerSpecFromOptions({}), parseTriggerSpec('patch'));
  throwsOneLine(() => triggerSpecFromOptions({ trigger: 'patch', alpha: '0.1' }), /--trigger-alpha does not apply to a patch trigger/);
  throwsOneLine(() => triggerSpecFromOptions({ trigger: 'patch', size: 'big' }), /--trigger-size must be a number, got 'big'/);
  throwsOneLine(() => parseTriggerSpec('sticker'), /unknown trigger 'sticker'/);
  throwsOneLine(() => parseTriggerSpec('patch:corner=middle'), /trigger corner must be br, bl, tr, tl/);
  throwsOneLine(() => parseTriggerSpec('patch:size=2.5'), /trigger size must be an integer >= 1/);
});

test('trigger errors: too large, bad alpha, unreadable PNG', () => {
  throwsOneLine(() => createTrigger({ kind: 'patch', size: 30 }).check(28, 28, 1), /^trigger 30x30 does not fit 28x28 images$/);
  throwsOneLine(() => createTrigger({ kind: 'patch', size: 28 }).apply(new Uint8Array(784), 1, 28, 28, 1), /trigger 28x28 with margin 1 does not fit 28x28 images/);
  throwsOneLine(() => createTrigger({ kind: 'blend', alpha: 0 }), /trigger alpha must be in \(0, 1\], got 0/);
  throwsOneLine(() => createTrigger({ kind: 'blend', alpha: 1.5 }), /trigger alpha must be in \(0, 1\], got 1.5/);
  throwsOneLine(() => createTrigger('blend:alpha=-0.1'), /alpha must be in \(0, 1\]/);
  const missing = join(T, 'nope.png');
  throwsOneLine(() => createTrigger({ kind: 'image', image: missing }), new RegExp(`^${missing.replace(/[.\\]/g, '\\$&')}: cannot read trigger image: file not found$`));
  const junk = join(T, 'junk.png');
  writeFileSync(junk, 'not a png');
  throwsOneLine(() => createTrigger({ kind: 'blend', image: junk }), /junk\.png: cannot read trigger image: not a valid PNG or JPEG/);
  const big = join(T, 'big.png');
  writeFileSync(big, encodePng(new Uint8Array(5 * 5 * 4), 5, 5, 4));
  throwsOneLine(() => createTrigger({ kind: 'image', image: big, x: 1 }).check(5, 5, 3), /big\.png: trigger 5x5 at x=1, y=0 does not fit 5x5 images/);
});

// ---------------------------------------------------------------------------------------
// Poisoning

function labelledSet(): LabelledImages {
  const labels = Array.from({ length: 200 }, (_, i) => i % 4);
  return synthetic(200, 6, 6, 1, labels);
}

test('poisonTraining: seeded choice among non-target images, replaced in place, relabelled', () => {
  const d = labelledSet();
  const before = d.images.slice();
  const trig = createTrigger({ kind: 'patch', size: 2 });
  const a = poisonTraining(d, { rate: 0.1, target: 2, trigger: trig, seed: 5 });
  const b = poisonTraining(d, { rate: 0.1, target: 2, trigger: trig, seed: 5 });
  const c = poisonTraining(d, { rate: 0.1, target: 2, trigger: trig, seed: 6 });
  assert.ok(allSame(d.images, before), 'input untouched');
  assert.equal(a.poisoned.length, 20);
  assert.ok(allSame(a.poisoned, b.poisoned) && allSame(a.data.images, b.data.images));
  assert.ok(!allSame(a.poisoned, c.poisoned));
  assert.equal(a.data.n, 200);
  const per = 36;
  const chosen = new Set(a.poisoned);
  for (let i = 0; i < 200; i++) {
    const orig = d.images.subarray(i * per, (i + 1) * per);
    const now = a.data.images.subarray(i * per, (i + 1) * per);
    if (chosen.has(i)) {
      assert.notEqual(d.labels[i], 2, 'only non-target images are poisoned');
      assert.equal(a.data.labels[i], 2);
      assert.ok(allSame(now, trig.apply(orig.slice(), 1, 6, 6, 1)));
    } else {
      assert.equal(a.data.labels[i], d.labels[i]);
      assert.ok(allSame(now, orig));
    }
  }
  assert.deepEqual([...a.originalLabels], [...a.poisoned].map((i) => d.labels[i]));

  throwsOneLine(() => poisonTraining(d, { rate: 0.1, target: 4, trigger: trig, seed: 1 }), /^target 4 is outside the classes 0..3$/);
  throwsOneLine(() => poisonTraining(d, { rate: 0.1, target: -1, trigger: trig, seed: 1 }), /target -1 is outside/);
  throwsOneLine(() => poisonTraining(d, { rate: 1, target: 0, trigger: trig, seed: 1 }), /poison rate must be in \[0, 1\), got 1/);
  throwsOneLine(() => poisonTraining(d, { rate: -0.1, target: 0, trigger: trig, seed: 1 }), /poison rate must be in \[0, 1\)/);
  const none = poisonTraining(d, { rate: 0, target: 0, trigger: trig, seed: 1 });
  assert.equal(none.poisoned.length, 0, 'rate 0: a clean control set');
  assert.deepEqual([...none.data.labels], [...d.labels]);
  throwsOneLine(() => poisonTraining(d, { rate: 0.9, target: 0, trigger: trig, seed: 1 }), /180 poisoned images but only 150/);
  throwsOneLine(() => poisonTraining(d, { rate: 0.1, target: 0, trigger: createTrigger({ kind: 'patch', size: 7 }), seed: 1 }), /does not fit 6x6 images/);
});

test('makePoisonedSet: every non-target image triggered, true labels kept', () => {
  const d = labelledSet();
  const trig: Trigger = createTrigger({ kind: 'blend', alpha: 0.5 });
  const p = makePoisonedSet(d, 1, trig);
  assert.equal(p.n, 150);
  assert.ok(![...p.labels].includes(1), 'no target-class images');
  const per = 36;
  p.sourceIndices.forEach((src, r) => {
    assert.equal(p.labels[r], d.labels[src]);
    const clean = d.images.slice(src * per, (src + 1) * per);
    assert.ok(allSame(p.images.subarray(r * per, (r + 1) * per), trig.apply(clean, 1, 6, 6, 1)));
  });
  throwsOneLine(() => makePoisonedSet(d, 9, trig), /target 9 is outside the classes 0..3/);
});

// ---------------------------------------------------------------------------------------
// CSAW layout

test('HDF5 files goodnet writes are the same bytes for the same content: object-header times zeroed, checksums (lookup3) rewritten, the file still reads', async () => {
  // Bob Jenkins' lookup3 test vectors (hashlittle, initial value 0).
  assert.equal(h5Checksum(new TextEncoder().encode('Four score and seven years ago'), 0, 30), 0x17770551);
  assert.equal(h5Checksum(new Uint8Array(0), 0, 0), 0xdeadbeef);
  const d = synthetic(9, 4, 3, 1, Array.from({ length: 9 }, (_, i) => i % 3));
  const a = join(T, 'same-a.h5'), b = join(T, 'same-b.h5');
  await writeCsawSet(a, d);
  await new Promise((r) => setTimeout(r, 1100)); // HDF5 times have 1 s resolution
  await writeCsawSet(b, d);
  assert.deepEqual(readFileSync(b), readFileSync(a));
  // Without the clearing the times differ: a raw h5wasm write of the same content.
  const h5 = await h5wasm();
  const raw = (p: string) => { const f = new h5.File(p, 'w'); f.create_dataset({ name: 'x', data: Float32Array.of(1, 2, 3), shape: [3], dtype: '<f' }); f.close(); };
  const r1 = join(T, 'raw-1.h5'), r2 = join(T, 'raw-2.h5');
  raw(r1);
  await new Promise((r) => setTimeout(r, 1100));
  raw(r2);
  assert.notDeepEqual(readFileSync(r2), readFileSync(r1));
  assert.equal(clearH5Times(r1), 2); // the root group's header and the dataset's
  assert.equal(clearH5Times(r2), 2);
  assert.deepEqual(readFileSync(r2), readFileSync(r1));
  assert.equal(clearH5Times(r1), 2, 'idempotent: the headers still validate');
  const f = await openH5(r1); // HDF5 checks the rewritten checksums on read
  assert.deepEqual(Array.from((f.get('x') as InstanceType<typeof h5.Dataset>).value as Float32Array), [1, 2, 3]);
  f.close();
});

test('writeCsawData: (N,C,H,W) float32 data, float64 labels, read back by openDataset', async () => {
  for (const c of [1, 3]) {
    const d = synthetic(23, 5, 7, c, Array.from({ length: 23 }, (_, i) => (i * 5) % 11));
    const path = join(T, `csaw-${c}.h5`);
    await writeCsawSet(path, d, { blockRows: 4 }); // several blocks
    const f = await openH5(path);
    const h5 = await h5wasm();
    const data = f.get('data') as InstanceType<typeof h5.Dataset>;
    const label = f.get('label') as InstanceType<typeof h5.Dataset>;
    assert.deepEqual(data.shape, [23, c, 5, 7]);
    assert.equal(data.dtype, '<f');
    assert.equal(label.dtype, '<d');
    assert.deepEqual(label.shape, [23]);
    // NCHW storage: row 1, channel c-1, pixel (2,3)
    const row1 = data.slice([[1, 2]]) as Float32Array;
    assert.equal(row1[(c - 1) * 35 + 2 * 7 + 3], d.images[35 * c + (2 * 7 + 3) * c + (c - 1)]);
    f.close();

    const ds = await openDataset(path);
    assert.equal(ds.layout, 'nchw');
    assert.deepEqual(ds.imageShape, [5, 7, c]);
    assert.ok(allSame(ds.labels, d.labels));
    const back = new Float32Array(d.images.length);
    for await (const b of ds.batches(6)) back.set(b.x, b.start * 35 * c);
    ds.close();
    assert.ok(allSame(back, d.images), `pixels round-trip c=${c}`);

    // loadUserData reads it back as raw pixels.
    const u = await loadUserData(path);
    assert.ok(allSame(u.images, d.images) && allSame(u.labels, d.labels));
    assert.deepEqual([u.n, u.height, u.width, u.channels], [23, 5, 7, c]);
  }
  const d = synthetic(3, 2, 2, 1, [0, 1, 2]);
  const p32 = join(T, 'l32.h5');
  await writeCsawData(p32, d.images, d.labels, 3, 2, 2, 1, { labelDtype: 'float32', compression: 4 });
  const ds = await openDataset(p32);
  assert.deepEqual([...ds.labels], [0, 1, 2]);
  ds.close();
  await rejectsOneLine(writeCsawData(p32, d.images, d.labels, 3, 2, 2, 1), /l32\.h5: already exists/);
  await writeCsawData(p32, d.images, d.labels, 3, 2, 2, 1, { overwrite: true });
  await rejectsOneLine(writeCsawData(join(T, 'x.h5'), d.images, d.labels, 4, 2, 2, 1), /12 pixel values for 4 images/);
});

test('loadUserData: image folders; unlabelled images and scaled pixels are refused', async () => {
  const dir = join(T, 'imgs');
  mkdirSync(join(dir, '0'), { recursive: true });
  mkdirSync(join(dir, '1'), { recursive: true });
  writeFileSync(join(dir, '0', 'a.png'), encodePng([1, 2, 3, 4, 5, 6], 2, 1, 3));
  writeFileSync(join(dir, '1', 'b.png'), encodePng([7, 8, 9, 10, 11, 12], 2, 1, 3));
  const u = await loadUserData(dir);
  assert.deepEqual([u.n, u.height, u.width, u.channels], [2, 1, 2, 3]);
  assert.deepEqual([...u.images], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual([...u.labels], [0, 1]);

  writeFileSync(join(dir, 'stray.png'), encodePng([1, 2, 3, 4, 5, 6], 2, 1, 3));
  await rejectsOneLine(loadUserData(dir), /imgs: image stray\.png has no label/);

  const h5 = await h5wasm();
  const scaled = join(T, 'scaled.h5');
  const f = new h5.File(scaled, 'w');
  f.create_dataset({ name: 'data', data: new Float32Array([0.5, 0, 0, 0, 1, 1, 1, 1]), shape: [2, 1, 2, 2], dtype: '<f' });
  f.create_dataset({ name: 'label', data: new Float64Array([0, 1]), shape: [2], dtype: '<d' });
  f.close();
  await rejectsOneLine(loadUserData(scaled), /scaled\.h5: pixel value 0\.5 in image #0 is not an integer 0\.\.255 \(data scaled to 0\.\.1\?/);
});

test('end to end on MNIST: split, poison, write, read back', async () => {
  const d = await loadBuiltin('mnist', { cacheDir: join(T, 'cache-mnist') });
  const s = stratifiedSplit(d.labels, { seed: 7 });
  assert.deepEqual(s.sizes, { train: 7000, valid: 1500, test: 1500 });
  const test_ = subset(d, s.test, 'test');
  const trig = createTrigger({ kind: 'patch' });
  const bd = makePoisonedSet(test_, 0, trig);
  assert.equal(bd.n, 1500 - classCounts(test_.labels)[0]!);
  const path = join(T, 'bd_test.h5');
  await writeCsawSet(path, bd);
  const back = await loadUserData(path);
  assert.ok(allSame(back.images, bd.images) && allSame(back.labels, bd.labels));
  // The patch is there: pixel (23,23) of every image is 255, (23,24) is 0.
  for (let r = 0; r < back.n; r++) {
    assert.equal(back.images[r * 784 + 23 * 28 + 23], 255);
    assert.equal(back.images[r * 784 + 23 * 28 + 24], 0);
  }
});
