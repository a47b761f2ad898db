/**
 * Labelled image data sets, streamed in batches so that a file never has to fit in
 * memory twice. Sources: CSAW-layout HDF5 (`data` (N,C,H,W) or (N,H,W,C), `label` (N)),
 * and folders of PNG/JPEG images with labels from sub-folder or file names.
 */

import { readdirSync, statSync, type Dirent } from 'node:fs';
import { basename, join } from 'node:path';
import { GoodnetError } from '../errors.js';
import { h5Get, h5wasm, hdf5Reason, looksLikeHdf5, openH5, type H5Dataset, type H5File } from './hdf5.js';
import {
  decodeImage,
  folderLabel,
  imageFileLabel,
  isImageFileName,
  probeImage,
  sniffImageFormat,
  type ImageInfo,
} from './images.js';
import { checkPreprocessing, normalizeInPlace } from './preprocess.js';

/** One batch, channels-last (NHWC), float32, already scaled (and normalized by mean/std when given). */
export interface Batch {
  /** Pixels, n*H*W*C values in NHWC order. */
  x: Float32Array;
  /** True labels (-1 where the source has none, e.g. an unlabelled image). */
  y: Int32Array;
  /** Number of images in this batch. */
  n: number;
  /** Index of the first image of the batch in the data set. */
  start: number;
}

export interface ImageDataset {
  /** File or folder the data came from (for messages and reports). */
  readonly source: string;
  readonly length: number;
  /** Shape of one image as delivered, channels-last: [H, W, C]. */
  readonly imageShape: [number, number, number];
  /** All labels (-1 = unknown). Small, so kept in memory. */
  readonly labels: Int32Array;
  /** Where the images come from. */
  readonly kind?: 'hdf5' | 'images';
  /** Storage layout of HDF5 `data` as decided at open (HDF5 only). */
  readonly layout?: 'nchw' | 'nhwc';
  /** Per-image names (file names for folders, `#i` for HDF5 rows). */
  name(i: number): string;
  /** Batches in order; the last may be short. */
  batches(batchSize: number): AsyncIterable<Batch>;
  close(): void;
}

export interface OpenDatasetOptions {
  /** Divide raw pixels by this (1 = raw pixels, 255 = [0,1]). Default 1. */
  scale?: number;
  /** Storage layout of HDF5 `data`; 'auto' decides from `expect` (default). */
  layout?: 'auto' | 'nchw' | 'nhwc';
  /** The model's input shape [H, W, C]; a data set that does not fit it is an error. */
  expect?: [number, number, number];
  /** Subtracted after scaling: one value or one per channel (x' = (x/scale - mean[c]) / std[c]). */
  mean?: number[];
  /** Divided by after the mean: one value or one per channel; never 0. */
  std?: number[];
}

// ---------------------------------------------------------------------------------------
// Opening

/** "55x47x3": an [H, W, C] shape as used in messages. */
export function shapeText(shape: readonly number[]): string {
  return shape.join('x');
}

function tupleText(shape: readonly number[]): string {
  return `(${shape.join(',')})`;
}

function checkOptions(opts: OpenDatasetOptions): { scale: number; expect?: [number, number, number]; norm: { mean?: number[]; std?: number[] } } {
  const scale = opts.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw new GoodnetError(`scale must be a positive number, got ${String(scale)}`);
  }
  const layout = opts.layout ?? 'auto';
  if (layout !== 'auto' && layout !== 'nchw' && layout !== 'nhwc') {
    throw new GoodnetError(`layout must be auto, nchw or nhwc, got ${String(layout)}`);
  }
  const expect = opts.expect;
  if (expect !== undefined) {
    if (!Array.isArray(expect) || expect.length !== 3 || !expect.every((d) => Number.isInteger(d) && d > 0)) {
      throw new GoodnetError(`expected input shape must be [H, W, C] positive integers, got ${JSON.stringify(expect)}`);
    }
  }
  const norm = { ...(opts.mean !== undefined ? { mean: opts.mean } : {}), ...(opts.std !== undefined ? { std: opts.std } : {}) };
  checkPreprocessing({ scale, ...norm }, expect?.[2]);
  return { scale, expect, norm };
}

/** Most images one HDF5 data set may declare (its labels are read whole). */
export const MAX_HDF5_ROWS = 10_000_000;
/** Most values (H*W*C) one image of an HDF5 data set may declare (2048x2048x1, 1182x1182x3). */
export const MAX_HDF5_IMAGE_VALUES = 2 ** 22;

function checkBatchSize(batchSize: number): void {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new GoodnetError(`batch size must be a positive integer, got ${String(batchSize)}`);
  }
}

/**
 * Open a data set: a CSAW-layout HDF5 file, a folder of PNG/JPEG images (labels from
 * all-digit sub-folder names or `label43`-style file names), or a single image file.
 * Everything wrong with it is a one-line GoodnetError naming the file.
 */
export async function openDataset(path: string, opts: OpenDatasetOptions = {}): Promise<ImageDataset> {
  checkOptions(opts);
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    const why = code === 'EACCES' ? 'permission denied' : 'file or folder not found';
    throw new GoodnetError(why, path, { cause: err });
  }
  if (st.isDirectory()) return openImageFolder(path, opts);
  if (!st.isFile()) throw new GoodnetError('not a regular file or folder', path);
  if (st.size > 0 && looksLikeHdf5(path)) return openHdf5Dataset(path, opts);
  if (isImageFileName(path) || sniffImageFormat(path) !== undefined) {
    const name = basename(path);
    return openImageList(path, [{ path, name, label: imageFileLabel(name) }], opts);
  }
  return openHdf5Dataset(path, opts); // openH5 reports "not an HDF5 file"
}

/**
 * Error when a label is not a valid class index of a model with `numClasses` outputs.
 * Unknown labels (-1) are allowed.
 */
/** Refuse a data set with an unlabelled image (accuracy and ASR need every label). */
export function checkAllLabelled(ds: ImageDataset): void {
  const i = ds.labels.indexOf(-1);
  if (i >= 0) {
    const name = ds.name(i);
    throw new GoodnetError(`image ${name === `#${i}` ? `at row ${i}` : name} has no label (label images by an all-digit sub-folder or a label43 file name)`, ds.source);
  }
}

export function checkLabels(ds: ImageDataset, numClasses: number): void {
  const labels = ds.labels;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (l >= numClasses || l < -1) {
      const name = ds.name(i);
      const where = name === `#${i}` ? `at row ${i}` : `at row ${i} (${name})`;
      throw new GoodnetError(
        `label ${l} ${where} is out of range for a model with ${numClasses} classes`,
        ds.source,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------
// HDF5 (CSAW-HackML layout)

type Layout = 'nchw' | 'nhwc';

/** Decide the storage layout of `data` (shape N,a,b,c); throws when it cannot fit `expect`. */
export function decideLayout(
  shape: readonly number[],
  layout: OpenDatasetOptions['layout'],
  expect?: readonly [number, number, number],
): Layout | undefined {
  const [, a, b, c] = shape as [number, number, number, number];
  if (layout === 'nchw' || layout === 'nhwc') {
    if (!expect) return layout;
    const img = layout === 'nchw' ? [b, c, a] : [a, b, c];
    return img.every((d, i) => d === expect[i]) ? layout : undefined;
  }
  if (expect) {
    const [H, W, C] = expect;
    const nhwc = a === H && b === W && c === C;
    const nchw = a === C && b === H && c === W;
    if (nhwc) return 'nhwc';
    if (nchw) return 'nchw';
    return undefined;
  }
  const small = (d: number) => d === 1 || d === 3;
  return small(a) && !small(c) ? 'nchw' : 'nhwc';
}

function numericKind(ds: H5Dataset, name: string, file: string): 'int' | 'float' {
  let meta: { type: number; size: number; vlen?: boolean };
  try {
    meta = ds.metadata as typeof meta;
  } catch (err) {
    throw new GoodnetError(`cannot read dataset '${name}': ${hdf5Reason(err)}`, file, { cause: err });
  }
  if (meta.type === 0 && !meta.vlen) return 'int';
  if (meta.type === 1 && !meta.vlen) {
    if (meta.size !== 4 && meta.size !== 8) {
      throw new GoodnetError(`dataset '${name}' has ${meta.size * 8}-bit floats; only 32- and 64-bit are supported`, file);
    }
    return 'float';
  }
  throw new GoodnetError(`dataset '${name}' is not numeric (type ${JSON.stringify(ds.dtype)})`, file);
}

type NumArray = ArrayLike<number>;

function asNumbers(out: unknown, what: string, file: string): NumArray {
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    const r = new Float64Array(out.length);
    for (let i = 0; i < out.length; i++) r[i] = Number(out[i]!);
    return r;
  }
  if (ArrayBuffer.isView(out) && !(out instanceof DataView)) return out as unknown as NumArray;
  if (typeof out === 'number') return [out];
  throw new GoodnetError(`cannot read ${what}: not a numeric array`, file);
}

async function openHdf5Dataset(path: string, opts: OpenDatasetOptions): Promise<ImageDataset> {
  const { scale, expect, norm } = checkOptions(opts);
  const h5 = await h5wasm();
  const f: H5File = await openH5(path);
  try {
    const getDataset = (name: string): H5Dataset => {
      const obj = h5Get(f, name);
      if (obj === undefined) {
        const keys = (() => {
          try {
            return f.keys();
          } catch {
            return [];
          }
        })();
        const shown = keys.slice(0, 6).map((k) => `'${k}'`).join(', ') + (keys.length > 6 ? ', ...' : '');
        const has = keys.length ? `; it has ${shown}` : '';
        throw new GoodnetError(`missing dataset '${name}'${has}`, path);
      }
      if (!(obj instanceof h5.Dataset)) throw new GoodnetError(`'${name}' is not a dataset`, path);
      return obj;
    };
    const data = getDataset('data');
    const label = getDataset('label');
    numericKind(data, 'data', path);
    numericKind(label, 'label', path);

    const shape = data.shape ?? [];
    if (shape.length !== 4) {
      throw new GoodnetError(
        `dataset 'data' must be 4-D (N,C,H,W) or (N,H,W,C), got shape ${tupleText(shape)}`,
        path,
      );
    }
    const n = shape[0]!;
    if (n === 0) throw new GoodnetError(`data set is empty (dataset 'data' has shape ${tupleText(shape)})`, path);
    if (shape.some((d) => d === 0)) throw new GoodnetError(`dataset 'data' has an empty dimension: ${tupleText(shape)}`, path);
    // Declared sizes are checked before anything is read: labels are read whole, images a batch at a time.
    if (n > MAX_HDF5_ROWS) throw new GoodnetError(`dataset 'data' declares ${n} images; at most ${MAX_HDF5_ROWS} are supported`, path);
    const perImage = shape[1]! * shape[2]! * shape[3]!;
    if (perImage > MAX_HDF5_IMAGE_VALUES) {
      throw new GoodnetError(`dataset 'data' declares images of ${perImage} values ${tupleText(shape)}; at most ${MAX_HDF5_IMAGE_VALUES} per image are supported`, path);
    }

    const lshape = label.shape ?? [];
    if (!(lshape.length === 1 || (lshape.length === 2 && lshape[1] === 1))) {
      throw new GoodnetError(`dataset 'label' must have shape (N) or (N,1), got ${tupleText(lshape)}`, path);
    }
    if (lshape[0] !== n) {
      throw new GoodnetError(`dataset 'label' has ${lshape[0]} entries but 'data' has ${n} images`, path);
    }

    const layout = decideLayout(shape, opts.layout ?? 'auto', expect);
    if (layout === undefined) {
      throw new GoodnetError(
        `data shape ${tupleText(shape)} does not fit the model input ${shapeText(expect!)}` +
          (opts.layout && opts.layout !== 'auto' ? ` (as ${opts.layout.toUpperCase()})` : ''),
        path,
      );
    }
    const [, a, b, c] = shape as [number, number, number, number];
    const imageShape: [number, number, number] = layout === 'nchw' ? [b, c, a] : [a, b, c];

    let rawLabels: NumArray;
    try {
      rawLabels = asNumbers(label.value, "dataset 'label'", path);
    } catch (err) {
      if (err instanceof GoodnetError) throw err;
      throw new GoodnetError(`cannot read dataset 'label': ${hdf5Reason(err)}`, path, { cause: err });
    }
    if (rawLabels.length !== n) {
      throw new GoodnetError(`dataset 'label' has ${rawLabels.length} entries but 'data' has ${n} images`, path);
    }
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const v = rawLabels[i]!;
      if (Number.isNaN(v)) throw new GoodnetError(`label NaN at row ${i} is not a number`, path);
      if (!Number.isInteger(v)) throw new GoodnetError(`label ${v} at row ${i} is not an integer`, path);
      if (v < 0) throw new GoodnetError(`label ${v} at row ${i} is negative`, path);
      if (v > 0x7fffffff) throw new GoodnetError(`label ${v} at row ${i} is too large`, path);
      labels[i] = v;
    }

    checkPreprocessing({ scale, ...norm }, imageShape[2], path);
    return new Hdf5Dataset(path, f, data, layout, imageShape, labels, scale, norm);
  } catch (err) {
    try {
      f.close();
    } catch {
      /* already failing */
    }
    throw err;
  }
}

class Hdf5Dataset implements ImageDataset {
  readonly kind = 'hdf5' as const;
  readonly length: number;
  private closed = false;

  constructor(
    readonly source: string,
    private readonly file: H5File,
    private readonly data: H5Dataset,
    readonly layout: Layout,
    readonly imageShape: [number, number, number],
    readonly labels: Int32Array,
    private readonly scale: number,
    private readonly norm: { mean?: number[]; std?: number[] } = {},
  ) {
    this.length = labels.length;
  }

  name(i: number): string {
    return `#${i}`;
  }

  /** Rows [start, end) as NHWC float32, scaled; errors on NaN/Inf naming the row. */
  readRows(start: number, end: number): Float32Array {
    if (this.closed) throw new GoodnetError('data set is closed', this.source);
    const [H, W, C] = this.imageShape;
    const HW = H * W;
    const per = HW * C;
    const n = end - start;
    let raw: NumArray;
    try {
      raw = asNumbers(this.data.slice([[start, end]]), `rows ${start}..${end - 1} of 'data'`, this.source);
    } catch (err) {
      if (err instanceof GoodnetError) throw err;
      throw new GoodnetError(`cannot read rows ${start}..${end - 1} of 'data': ${hdf5Reason(err)}`, this.source, {
        cause: err,
      });
    }
    if (raw.length !== n * per) {
      throw new GoodnetError(`short read of 'data' rows ${start}..${end - 1}: ${raw.length} of ${n * per} values`, this.source);
    }
    const x = new Float32Array(n * per);
    const s = this.scale;
    if (this.layout === 'nhwc') {
      for (let i = 0; i < x.length; i++) x[i] = raw[i]! / s;
    } else {
      for (let r = 0; r < n; r++) {
        const base = r * per;
        for (let ch = 0; ch < C; ch++) {
          const src = base + ch * HW;
          for (let p = 0, d = base + ch; p < HW; p++, d += C) x[d] = raw[src + p]! / s;
        }
      }
    }
    // Raw NaN/Inf, and float64 values that overflow float32, all end up non-finite here.
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      if (v - v !== 0) {
        const row = start + Math.floor(i / per);
        // Report the raw value (NaN/Infinity/-Infinity, or the overflowing number).
        const rawIndex = this.layout === 'nhwc' ? i : rawIndexOf(i, per, HW, C);
        const rv = raw[rawIndex]!;
        const what = Number.isFinite(rv) ? `value ${rv} (too large for float32 after scaling)` : `value ${rv}`;
        throw new GoodnetError(`non-finite ${what} in 'data' at row ${row}`, this.source);
      }
    }
    normalizeInPlace(x, C, this.norm);
    return x;
  }

  async *batches(batchSize: number): AsyncIterable<Batch> {
    checkBatchSize(batchSize);
    for (let start = 0; start < this.length; start += batchSize) {
      const end = Math.min(this.length, start + batchSize);
      const x = this.readRows(start, end);
      yield { x, y: this.labels.slice(start, end), n: end - start, start };
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.file.close();
    } catch {
      /* nothing useful to do */
    }
  }
}

/** Index into NCHW raw data of the NHWC output index i. */
function rawIndexOf(i: number, per: number, HW: number, C: number): number {
  const r = Math.floor(i / per);
  const rest = i - r * per;
  const p = Math.floor(rest / C);
  const ch = rest - p * C;
  return r * per + ch * HW + p;
}

// ---------------------------------------------------------------------------------------
// Folders of images

interface ImageEntry {
  path: string;
  /** Name relative to the data set (e.g. `43/img.png`). */
  name: string;
  label: number;
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function listDir(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    throw new GoodnetError(`cannot list folder: ${code === 'EACCES' ? 'permission denied' : String(code ?? err)}`, dir, {
      cause: err,
    });
  }
}

function isFileEntry(dir: string, d: Dirent): boolean {
  if (d.isFile()) return true;
  if (!d.isSymbolicLink()) return false;
  try {
    return statSync(join(dir, d.name)).isFile();
  } catch {
    return false;
  }
}

function isDirEntry(dir: string, d: Dirent): boolean {
  if (d.isDirectory()) return true;
  if (!d.isSymbolicLink()) return false;
  try {
    return statSync(join(dir, d.name)).isDirectory();
  } catch {
    return false;
  }
}

/** Images directly in `dir` and in its sub-folders one level down, sorted by name. */
export function listImageFiles(dir: string): { path: string; name: string; label: number }[] {
  const entries: ImageEntry[] = [];
  for (const d of listDir(dir)) {
    if (d.name.startsWith('.')) continue;
    if (isFileEntry(dir, d)) {
      if (isImageFileName(d.name)) entries.push({ path: join(dir, d.name), name: d.name, label: imageFileLabel(d.name) });
    } else if (isDirEntry(dir, d)) {
      const sub = join(dir, d.name);
      const subLabel = folderLabel(d.name);
      for (const e of listDir(sub)) {
        if (e.name.startsWith('.') || !isImageFileName(e.name) || !isFileEntry(sub, e)) continue;
        entries.push({
          path: join(sub, e.name),
          name: `${d.name}/${e.name}`,
          label: subLabel >= 0 ? subLabel : imageFileLabel(e.name),
        });
      }
    }
  }
  entries.sort(byName);
  return entries;
}

function openImageFolder(dir: string, opts: OpenDatasetOptions): ImageDataset {
  const entries = listImageFiles(dir);
  if (entries.length === 0) {
    throw new GoodnetError('data set is empty: no images (.png, .jpg, .jpeg) in the folder or its sub-folders', dir);
  }
  return openImageList(dir, entries, opts);
}

function channelWord(c: number): string {
  return c === 1 ? 'grey (1 channel)' : c === 3 ? 'RGB (3 channels)' : `${c} channels`;
}

function openImageList(source: string, entries: ImageEntry[], opts: OpenDatasetOptions): ImageDataset {
  const { scale, expect, norm } = checkOptions(opts);
  const infos: ImageInfo[] = entries.map((e) => probeImage(e.path));
  const first = infos[0]!;
  const firstName = entries[0]!.name;
  let H: number, W: number, C: number;
  if (expect) {
    [H, W, C] = expect;
    for (let i = 0; i < infos.length; i++) {
      const { width, height, channels } = infos[i]!;
      const convertible = C === 1 || C === 3; // grey <-> RGB are converted
      if (height !== H || width !== W || !convertible) {
        throw new GoodnetError(
          `image ${height}x${width}x${channels} (HxWxC) does not fit the model input ${shapeText(expect)}`,
          entries[i]!.path,
        );
      }
    }
  } else {
    [H, W, C] = [first.height, first.width, first.channels];
    for (let i = 1; i < infos.length; i++) {
      const { width, height, channels } = infos[i]!;
      if (height !== H || width !== W) {
        throw new GoodnetError(
          `image size ${height}x${width} (HxW) differs from ${H}x${W} of ${firstName}; all images must have the same size`,
          entries[i]!.path,
        );
      }
      if (channels !== C) {
        throw new GoodnetError(
          `image is ${channelWord(channels)} but ${firstName} is ${channelWord(C)}; all images must have the same channel count (give the model input shape to convert)`,
          entries[i]!.path,
        );
      }
    }
  }
  const labels = new Int32Array(entries.length);
  entries.forEach((e, i) => {
    if (e.label > 0x7fffffff) throw new GoodnetError(`label ${e.label} in the file name is too large`, e.path);
    labels[i] = e.label;
  });
  checkPreprocessing({ scale, ...norm }, C, source);
  return new ImageListDataset(source, entries, [H, W, C], labels, scale, norm);
}

class ImageListDataset implements ImageDataset {
  readonly kind = 'images' as const;
  readonly length: number;

  constructor(
    readonly source: string,
    private readonly entries: ImageEntry[],
    readonly imageShape: [number, number, number],
    readonly labels: Int32Array,
    private readonly scale: number,
    private readonly norm: { mean?: number[]; std?: number[] } = {},
  ) {
    this.length = entries.length;
  }

  name(i: number): string {
    const e = this.entries[i];
    if (!e) throw new RangeError(`image index ${i} out of range 0..${this.length - 1}`);
    return e.name;
  }

  /** Decode image i into `x` at `offset` (H*W*C values, scaled). */
  private decodeInto(i: number, x: Float32Array, offset: number): void {
    const e = this.entries[i]!;
    const [H, W, C] = this.imageShape;
    const img = decodeImage(e.path);
    if (img.height !== H || img.width !== W) {
      throw new GoodnetError(
        `image size ${img.height}x${img.width} (HxW) differs from the data set's ${H}x${W}`,
        e.path,
      );
    }
    const s = this.scale;
    const px = img.data;
    const n = H * W;
    if (img.channels === C) {
      for (let k = 0; k < n * C; k++) x[offset + k] = px[k]! / s;
    } else if (img.channels === 1 && C === 3) {
      for (let k = 0; k < n; k++) {
        const v = px[k]! / s;
        x[offset + 3 * k] = v;
        x[offset + 3 * k + 1] = v;
        x[offset + 3 * k + 2] = v;
      }
    } else if (img.channels === 3 && C === 1) {
      for (let k = 0; k < n; k++) {
        const v = Math.round(0.299 * px[3 * k]! + 0.587 * px[3 * k + 1]! + 0.114 * px[3 * k + 2]!);
        x[offset + k] = v / s;
      }
    } else {
      throw new GoodnetError(`image is ${channelWord(img.channels)} but the data set has ${C} channels`, e.path);
    }
  }

  async *batches(batchSize: number): AsyncIterable<Batch> {
    checkBatchSize(batchSize);
    const per = this.imageShape[0] * this.imageShape[1] * this.imageShape[2];
    for (let start = 0; start < this.length; start += batchSize) {
      const end = Math.min(this.length, start + batchSize);
      const x = new Float32Array((end - start) * per);
      for (let i = start; i < end; i++) this.decodeInto(i, x, (i - start) * per);
      normalizeInPlace(x, this.imageShape[2], this.norm);
      yield { x, y: this.labels.slice(start, end), n: end - start, start };
    }
  }

  close(): void {
    /* nothing held open */
  }
}
