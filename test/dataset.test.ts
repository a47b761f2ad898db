import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createH5 } from '../src/io/hdf5.js';
import { encodePng } from '../src/io/images.js';
import { checkLabels, openDataset, type Batch, type ImageDataset, type OpenDatasetOptions } from '../src/io/dataset.js';

const dir = mkdtempSync(join(tmpdir(), 'goodnet-dataset-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

type Typed = Float32Array | Float64Array | Uint8Array | Int32Array | BigInt64Array;

interface H5Spec {
  data?: { values: Typed; shape: number[]; dtype: string };
  label?: { values: Typed; shape: number[]; dtype: string };
}

async function writeH5(name: string, spec: H5Spec): Promise<string> {
  const p = join(dir, name);
  const f = await createH5(p);
  if (spec.data) f.create_dataset({ name: 'data', data: spec.data.values, shape: spec.data.shape, dtype: spec.data.dtype });
  if (spec.label) f.create_dataset({ name: 'label', data: spec.label.values, shape: spec.label.shape, dtype: spec.label.dtype });
  f.close();
  return p;
}

async function collect(ds: ImageDataset, bs: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of ds.batches(bs)) out.push(b);
  return out;
}

async function allPixels(ds: ImageDataset, bs = 3): Promise<Float32Array> {
  const bs_ = await collect(ds, bs);
  const per = ds.imageShape[0] * ds.imageShape[1] * ds.imageShape[2];
  const x = new Float32Array(ds.length * per);
  for (const b of bs_) x.set(b.x, b.start * per);
  return x;
}

async function openFails(path: string, re: RegExp, opts: OpenDatasetOptions = {}): Promise<void> {
  await assert.rejects(openDataset(path, opts), (e: Error) => {
    assert.equal(e.name, 'GoodnetError');
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

// Reference: N=5 images, H=4, W=2, C=3, NHWC, integer values 0..254.
const N = 5, H = 4, W = 2, C = 3;
const PER = H * W * C;
const nhwc = new Float32Array(N * PER).map((_, i) => (i * 7) % 255);
const nchw = new Float32Array(N * PER);
for (let n = 0; n < N; n++)
  for (let h = 0; h < H; h++)
    for (let w = 0; w < W; w++)
      for (let c = 0; c < C; c++) nchw[((n * C + c) * H + h) * W + w] = nhwc[((n * H + h) * W + w) * C + c]!;
const LABELS = [3, 0, 7, 1, 2];

test('NCHW and NHWC HDF5 give identical NHWC batches; batches cover all rows', async () => {
  const pc = await writeH5('nchw.h5', {
    data: { values: nchw, shape: [N, C, H, W], dtype: '<f' },
    label: { values: new Float32Array(LABELS), shape: [N], dtype: '<f' },
  });
  const pl = await writeH5('nhwc.h5', {
    data: { values: nhwc, shape: [N, H, W, C], dtype: '<f' },
    label: { values: new BigInt64Array(LABELS.map(BigInt)), shape: [N, 1], dtype: '<q' },
  });
  for (const opts of [{}, { expect: [H, W, C] as [number, number, number] }]) {
    const a = await openDataset(pc, opts);
    const b = await openDataset(pl, opts);
    assert.equal(a.layout, 'nchw');
    assert.equal(b.layout, 'nhwc');
    for (const ds of [a, b]) {
      assert.equal(ds.kind, 'hdf5');
      assert.equal(ds.length, N);
      assert.deepEqual(ds.imageShape, [H, W, C]);
      assert.deepEqual([...ds.labels], LABELS);
      assert.equal(ds.name(2), '#2');
      const batches = await collect(ds, 2);
      assert.deepEqual(batches.map((x) => [x.start, x.n, x.x.length, [...x.y]]), [
        [0, 2, 2 * PER, LABELS.slice(0, 2)],
        [2, 2, 2 * PER, LABELS.slice(2, 4)],
        [4, 1, PER, LABELS.slice(4)],
      ]);
      assert.deepEqual(await allPixels(ds), nhwc);
      ds.close();
      ds.close(); // idempotent
    }
  }
});

test('explicit layout and ambiguous shapes', async () => {
  // (N,3,3,3): without expect it is taken as NHWC; layout: 'nchw' forces the transpose.
  const vals = new Float32Array(2 * 27).map((_, i) => i);
  const p = await writeH5('cube.h5', {
    data: { values: vals, shape: [2, 3, 3, 3], dtype: '<f' },
    label: { values: new Int32Array([0, 1]), shape: [2], dtype: '<i' },
  });
  const auto = await openDataset(p);
  assert.equal(auto.layout, 'nhwc');
  auto.close();
  const forced = await openDataset(p, { layout: 'nchw' });
  assert.equal(forced.layout, 'nchw');
  const x = await allPixels(forced);
  assert.equal(x[1], 9); // pixel (0,0), channel 1 = vals[1*9 + 0]
  forced.close();
  // (N,1,28,28) → NCHW grey.
  const g = await writeH5('grey.h5', {
    data: { values: new Uint8Array(2 * 28 * 28), shape: [2, 1, 28, 28], dtype: '<B' },
    label: { values: new Int32Array([0, 1]), shape: [2], dtype: '<i' },
  });
  const gd = await openDataset(g);
  assert.deepEqual(gd.imageShape, [28, 28, 1]);
  gd.close();
});

test('float64 and uint8 data, with scale', async () => {
  const p64 = await writeH5('f64.h5', {
    data: { values: Float64Array.from(nchw), shape: [N, C, H, W], dtype: '<d' },
    label: { values: new Float64Array(LABELS), shape: [N], dtype: '<d' },
  });
  const pu8 = await writeH5('u8.h5', {
    data: { values: Uint8Array.from(nhwc), shape: [N, H, W, C], dtype: '<B' },
    label: { values: new Uint8Array(LABELS), shape: [N], dtype: '<B' },
  });
  const scaled = nhwc.map((v) => v / 255);
  for (const p of [p64, pu8]) {
    const raw = await openDataset(p, { expect: [H, W, C] });
    assert.deepEqual(await allPixels(raw), nhwc);
    assert.deepEqual([...raw.labels], LABELS);
    raw.close();
    const ds = await openDataset(p, { expect: [H, W, C], scale: 255 });
    assert.deepEqual(await allPixels(ds, 4), scaled);
    ds.close();
  }
});

test('HDF5 errors name the file and what is wrong', async () => {
  const goodData = { values: nhwc, shape: [N, H, W, C], dtype: '<f' };
  const goodLabel = { values: new Int32Array(LABELS), shape: [N], dtype: '<i' };
  await openFails(join(dir, 'nope.h5'), /nope\.h5: file or folder not found/);
  const txt = join(dir, 'text.h5');
  writeFileSync(txt, 'hello, not hdf5');
  await openFails(txt, /text\.h5: not an HDF5 file/);
  await openFails(await writeH5('nodata.h5', { label: goodLabel }), /nodata\.h5: missing dataset 'data'/);
  await openFails(await writeH5('nolabel.h5', { data: goodData }), /nolabel\.h5: missing dataset 'label'/);
  await openFails(
    await writeH5('threed.h5', { data: { values: nhwc, shape: [N, H * W, C], dtype: '<f' }, label: goodLabel }),
    /threed\.h5: dataset 'data' must be 4-D .*got shape \(5,8,3\)/,
  );
  await openFails(
    await writeH5('shortlabel.h5', { data: goodData, label: { values: new Int32Array(4), shape: [4], dtype: '<i' } }),
    /shortlabel\.h5: dataset 'label' has 4 entries but 'data' has 5 images/,
  );
  await openFails(
    await writeH5('label2d.h5', { data: goodData, label: { values: new Int32Array(10), shape: [N, 2], dtype: '<i' } }),
    /label2d\.h5: dataset 'label' must have shape \(N\) or \(N,1\), got \(5,2\)/,
  );
  await openFails(
    await writeH5('frac.h5', { data: goodData, label: { values: new Float32Array([0, 1, 3.5, 0, 0]), shape: [N], dtype: '<f' } }),
    /frac\.h5: label 3\.5 at row 2 is not an integer/,
  );
  await openFails(
    await writeH5('neg.h5', { data: goodData, label: { values: new Int32Array([0, 1, 2, -1, 0]), shape: [N], dtype: '<i' } }),
    /neg\.h5: label -1 at row 3 is negative/,
  );
  await openFails(
    await writeH5('nanlabel.h5', { data: goodData, label: { values: new Float32Array([0, NaN, 0, 0, 0]), shape: [N], dtype: '<f' } }),
    /nanlabel\.h5: label NaN at row 1 is not a number/,
  );
  await openFails(
    await writeH5('empty.h5', {
      data: { values: new Float32Array(0), shape: [0, H, W, C], dtype: '<f' },
      label: { values: new Int32Array(0), shape: [0], dtype: '<i' },
    }),
    /empty\.h5: data set is empty/,
  );
  const small = await writeH5('small.h5', {
    data: { values: new Float32Array(5 * 3 * 28 * 28), shape: [5, 3, 28, 28], dtype: '<f' },
    label: goodLabel,
  });
  await openFails(small, /small\.h5: data shape \(5,3,28,28\) does not fit the model input 55x47x3/, { expect: [55, 47, 3] });
  await openFails(small, /small\.h5: data shape \(5,3,28,28\) does not fit the model input 28x28x1/, {
    expect: [28, 28, 1],
    layout: 'nchw',
  });
});

test('NaN/Inf in data is reported per batch with the row index', async () => {
  for (const [name, bad, row] of [['nan.h5', NaN, 3], ['inf.h5', Infinity, 4], ['ninf.h5', -Infinity, 0]] as const) {
    const vals = Float32Array.from(nchw);
    vals[row * PER + 5] = bad;
    const p = await writeH5(name, {
      data: { values: vals, shape: [N, C, H, W], dtype: '<f' },
      label: { values: new Int32Array(LABELS), shape: [N], dtype: '<i' },
    });
    const ds = await openDataset(p);
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const b of ds.batches(2)) seen.push(b.start);
      })(),
      new RegExp(`${name.replace('.', '\\.')}: non-finite value ${String(bad)} in 'data' at row ${row}$`),
    );
    assert.deepEqual(seen, [0, 2].filter((s) => s + 2 <= row)); // earlier batches were delivered
    ds.close();
  }
  // float64 values that overflow float32 are also caught.
  const big = Float64Array.from(nhwc);
  big[2 * PER] = 1e300;
  const p = await writeH5('huge.h5', {
    data: { values: big, shape: [N, H, W, C], dtype: '<d' },
    label: { values: new Int32Array(LABELS), shape: [N], dtype: '<i' },
  });
  const ds = await openDataset(p);
  await assert.rejects(collect(ds, 10), /huge\.h5: non-finite value 1e\+300 .*at row 2/);
  ds.close();
});

test('checkLabels rejects labels beyond the model classes', async () => {
  const labels = new Int32Array(20);
  labels[17] = 1300;
  const p = await writeH5('range.h5', {
    data: { values: new Float32Array(20 * 12), shape: [20, 2, 2, 3], dtype: '<f' },
    label: { values: labels, shape: [20], dtype: '<i' },
  });
  const ds = await openDataset(p);
  checkLabels(ds, 1301);
  assert.throws(() => checkLabels(ds, 1283), /range\.h5: label 1300 at row 17 is out of range for a model with 1283 classes/);
  ds.close();
});

// ---------------------------------------------------------------------------------------
// Image folders

function solid(w: number, h: number, c: 1 | 2 | 3 | 4, v: number[]): Buffer {
  const px = new Uint8Array(w * h * c);
  for (let i = 0; i < w * h; i++) for (let k = 0; k < c; k++) px[i * c + k] = v[k]!;
  return encodePng(px, w, h, c);
}

function folder(name: string, files: Record<string, Buffer | string>): string {
  const root = join(dir, name);
  for (const [rel, content] of Object.entries(files)) {
    const p = join(root, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
  }
  mkdirSync(root, { recursive: true });
  return root;
}

test('folder: labels from digit sub-folders and file names, sorted, one level deep', async () => {
  const img = (v: number) => solid(3, 2, 3, [v, v + 1, v + 2]);
  const root = folder('labelled', {
    '7/b.png': img(70),
    '7/a.PNG': img(71),
    '12/z.png': img(120),
    'misc/face_label_5.png': img(50),
    'misc/unknown.png': img(1),
    'misc/deeper/ignored.png': img(2),
    'root-label=9.png': img(90),
    'x.png': img(3),
    'notes.txt': 'not an image',
    '.hidden.png': 'ignored',
  });
  const ds = await openDataset(root);
  const names = Array.from({ length: ds.length }, (_, i) => ds.name(i));
  assert.deepEqual(names, ['12/z.png', '7/a.PNG', '7/b.png', 'misc/face_label_5.png', 'misc/unknown.png', 'root-label=9.png', 'x.png']);
  assert.deepEqual([...ds.labels], [12, 7, 7, 5, -1, 9, -1]);
  assert.equal(ds.kind, 'images');
  assert.deepEqual(ds.imageShape, [2, 3, 3]);
  const batches = await collect(ds, 3);
  assert.deepEqual(batches.map((b) => [b.start, b.n]), [[0, 3], [3, 3], [6, 1]]);
  assert.deepEqual([...batches[0]!.x.slice(0, 3)], [120, 121, 122]);
  assert.deepEqual([...batches[2]!.y], [-1]);
  const scaled = await openDataset(root, { scale: 255, expect: [2, 3, 3] });
  const x = await allPixels(scaled);
  assert.ok(Math.abs(x[0]! - 120 / 255) < 1e-7);
  checkLabels(scaled, 13);
  assert.throws(() => checkLabels(scaled, 10), /labelled: label 12 at row 0 \(12\/z\.png\) is out of range for a model with 10 classes/);
});

test('folder: grey, RGB, RGBA and grey+alpha PNGs; conversion to the model channels', async () => {
  const grey = folder('grey', { 'a.png': solid(2, 2, 1, [10]), 'b.png': solid(2, 2, 2, [20, 128]) });
  const g = await openDataset(grey);
  assert.deepEqual(g.imageShape, [2, 2, 1]);
  assert.deepEqual([...(await allPixels(g))], [10, 10, 10, 10, 20, 20, 20, 20]);

  const rgba = folder('rgba', { 'a.png': solid(1, 1, 4, [1, 2, 3, 50]), 'b.png': solid(1, 1, 3, [4, 5, 6]) });
  const r = await openDataset(rgba);
  assert.deepEqual(r.imageShape, [1, 1, 3]);
  assert.deepEqual([...(await allPixels(r))], [1, 2, 3, 4, 5, 6]);

  const mixed = folder('mixed', { 'a.png': solid(1, 2, 3, [1, 2, 3]), 'b.png': solid(1, 2, 1, [9]) });
  await openFails(mixed, /mixed[/\\]b\.png: image is grey \(1 channel\) but a\.png is RGB \(3 channels\)/);
  const toRgb = await openDataset(mixed, { expect: [2, 1, 3] });
  assert.deepEqual([...(await allPixels(toRgb))], [1, 2, 3, 1, 2, 3, 9, 9, 9, 9, 9, 9]);
  const toGrey = await openDataset(mixed, { expect: [2, 1, 1] });
  assert.deepEqual([...(await allPixels(toGrey))], [2, 2, 9, 9]); // round(.299+1.174+.342) = 2
});

test('single image file and JPEG', async () => {
  const p = join(dir, 'one-label42.png');
  writeFileSync(p, solid(4, 3, 3, [5, 6, 7]));
  const ds = await openDataset(p, { expect: [3, 4, 3] });
  assert.equal(ds.length, 1);
  assert.deepEqual([...ds.labels], [42]);
  assert.equal(ds.name(0), 'one-label42.png');
  const [b] = await collect(ds, 8);
  assert.equal(b!.n, 1);
  assert.deepEqual([...b!.x.slice(0, 3)], [5, 6, 7]);
  const jpeg = (await import('jpeg-js')).default;
  const jp = join(dir, 'photo.jpg');
  writeFileSync(jp, jpeg.encode({ data: new Uint8Array(6 * 5 * 4).fill(100), width: 6, height: 5 }, 95).data);
  const jd = await openDataset(jp);
  assert.deepEqual(jd.imageShape, [5, 6, 3]);
  assert.deepEqual([...jd.labels], [-1]);
  assert.ok((await allPixels(jd)).every((v) => Math.abs(v - 100) <= 3));
});

test('folder errors: missing, empty, size mismatch, expect mismatch, corrupt images', async () => {
  await openFails(join(dir, 'no-such-folder'), /no-such-folder: file or folder not found/);
  await openFails(folder('empty', { 'readme.txt': 'x' }), /empty: data set is empty: no images/);
  const sizes = folder('sizes', { 'a.png': solid(3, 2, 3, [0, 0, 0]), 'b.png': solid(3, 3, 3, [0, 0, 0]) });
  await openFails(sizes, /sizes[/\\]b\.png: image size 3x3 \(HxW\) differs from 2x3 of a\.png/);
  await openFails(sizes, /sizes[/\\]a\.png: image 2x3x3 \(HxWxC\) does not fit the model input 55x47x3/, { expect: [55, 47, 3] });
  const junk = folder('junk', { 'a.png': solid(2, 2, 3, [0, 0, 0]), 'b.png': 'garbage' });
  await openFails(junk, /junk[/\\]b\.png: not a valid PNG image/);
  const good = solid(16, 16, 3, [1, 2, 3]);
  const cut = folder('cut', { 'a.png': good, 'b.png': good.subarray(0, 40) });
  const ds = await openDataset(cut);
  await assert.rejects(collect(ds, 1), /cut[/\\]b\.png: corrupt PNG image/);
  await assert.rejects(collect(ds, 0), /batch size must be a positive integer/);
  await openFails(cut, /scale must be a positive number/, { scale: 0 });
});

// ---------------------------------------------------------------------------------------
// Real CSAW-HackML test images, when the shared folder is present.

const csawImages = fileURLToPath(new URL('../../../shared/csaw/images', import.meta.url));
test(
  'CSAW test images: 10 images with labels from file names',
  { skip: existsSync(csawImages) ? false : `real images not found at ${csawImages}` },
  async () => {
    const ds = await openDataset(csawImages, { expect: [55, 47, 3] });
    assert.equal(ds.length, 10);
    assert.deepEqual(ds.imageShape, [55, 47, 3]);
    assert.deepEqual([...ds.labels], [43, 328, 196, 1268, 748, 0, 0, 0, 0, 0]);
    assert.equal(ds.name(0), 'cl_0-label43.png');
    const x = await allPixels(ds, 4);
    assert.equal(x.length, 10 * 55 * 47 * 3);
    assert.ok(x.every((v) => v >= 0 && v <= 255 && Number.isInteger(v)));
    checkLabels(ds, 1283);
  },
);
