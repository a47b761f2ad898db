/**
 * h5wasm access: one lazily-initialised module, files opened with errors turned into
 * GoodnetErrors (h5wasm's C library would otherwise print HDF5-DIAG traces to stderr).
 */
import { existsSync, statSync, openSync, readSync, closeSync, readFileSync, writeSync } from 'node:fs';
import { GoodnetError } from '../errors.js';
import { openRegularFile } from './safe_open.js';

export type H5Module = typeof import('h5wasm/node');
export type H5File = InstanceType<H5Module['File']>;
export type H5Group = InstanceType<H5Module['Group']>;
export type H5Dataset = InstanceType<H5Module['Dataset']>;

let loading: Promise<H5Module> | undefined;

/** The h5wasm module, ready to use, with HDF5's own error printing replaced by exceptions. */
export function h5wasm(): Promise<H5Module> {
  loading ??= (async () => {
    const h5 = await import('h5wasm/node');
    const mod = await h5.ready;
    mod.activate_throwing_error_handler();
    return h5;
  })();
  return loading;
}

const SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** True when the file carries the HDF5 signature at one of the offsets the format allows. */
export function looksLikeHdf5(path: string): boolean {
  const fd = openRegularFile(path);
  try {
    const size = statSync(path).size;
    const buf = Buffer.alloc(8);
    for (let off = 0; off + 8 <= size && off <= 1 << 20; off = off === 0 ? 512 : off * 2) {
      readSync(fd, buf, 0, 8, off);
      if (buf.equals(SIGNATURE)) return true;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

/** The last "minor:" line of an HDF5-DIAG trace is the most specific reason. */
export function hdf5Reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const minors = [...text.matchAll(/minor: (.*)/g)].map((m) => m[1]!.trim());
  const reason = minors.at(-1) ?? text.split('\n')[0] ?? 'unknown error';
  return reason.toLowerCase();
}

/** Open an existing HDF5 file for reading, or throw a one-line GoodnetError naming it. */
export async function openH5(path: string): Promise<H5File> {
  if (!existsSync(path)) throw new GoodnetError('file not found', path);
  if (statSync(path).isDirectory()) throw new GoodnetError('is a directory, expected an HDF5 file', path);
  if (!looksLikeHdf5(path)) throw new GoodnetError('not an HDF5 file (no HDF5 signature)', path);
  const h5 = await h5wasm();
  let f: H5File;
  try {
    f = new h5.File(path, 'r');
  } catch (err) {
    throw new GoodnetError(`cannot open HDF5 file: ${hdf5Reason(err)}`, path, { cause: err });
  }
  openedAs.set(String(f.file_id), path);
  return f;
}

/** File names of the HDF5 files opened for reading, by file id (for errors about their objects). */
const openedAs = new Map<string, string>();

/** Create (truncate) an HDF5 file for writing. */
export async function createH5(path: string): Promise<H5File> {
  const h5 = await h5wasm();
  try {
    return new h5.File(path, 'w');
  } catch (err) {
    throw new GoodnetError(`cannot create HDF5 file: ${hdf5Reason(err)}`, path, { cause: err });
  }
}

/**
 * HDF5's checksum (H5_checksum_lookup3: Bob Jenkins' lookup3 hashlittle, byte by byte, initial
 * value 0) of `length` bytes of `b` from `start`.
 */
export function h5Checksum(b: Uint8Array, start: number, length: number): number {
  const rot = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
  let a = (0xdeadbeef + length) >>> 0;
  let bb = a;
  let c = a;
  let i = start;
  let len = length;
  const word = (j: number) => (b[j]! | (b[j + 1]! << 8) | (b[j + 2]! << 16) | (b[j + 3]! << 24)) >>> 0;
  while (len > 12) {
    a = (a + word(i)) >>> 0;
    bb = (bb + word(i + 4)) >>> 0;
    c = (c + word(i + 8)) >>> 0;
    a = ((a - c) >>> 0) ^ rot(c, 4); c = (c + bb) >>> 0;
    bb = ((bb - a) >>> 0) ^ rot(a, 6); a = (a + c) >>> 0;
    c = ((c - bb) >>> 0) ^ rot(bb, 8); bb = (bb + a) >>> 0;
    a = ((a - c) >>> 0) ^ rot(c, 16); c = (c + bb) >>> 0;
    bb = ((bb - a) >>> 0) ^ rot(a, 19); a = (a + c) >>> 0;
    c = ((c - bb) >>> 0) ^ rot(bb, 4); bb = (bb + a) >>> 0;
    len -= 12;
    i += 12;
  }
  if (len === 0) return c;
  // The last 1..12 bytes, little-endian into a, b, c.
  const add = [0, 0, 0];
  for (let j = 0; j < len; j++) add[j >> 2]! += b[i + j]! * 2 ** (8 * (j & 3));
  a = (a + add[0]!) >>> 0;
  bb = (bb + add[1]!) >>> 0;
  c = (c + add[2]!) >>> 0;
  c = (c ^ bb) >>> 0; c = (c - rot(bb, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rot(c, 11)) >>> 0;
  bb = (bb ^ a) >>> 0; bb = (bb - rot(a, 25)) >>> 0;
  c = (c ^ bb) >>> 0; c = (c - rot(bb, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rot(c, 4)) >>> 0;
  bb = (bb ^ a) >>> 0; bb = (bb - rot(a, 14)) >>> 0;
  c = (c ^ bb) >>> 0; c = (c - rot(bb, 24)) >>> 0;
  return c;
}

/**
 * Zero the access / modification / change / birth times HDF5 stores in every version-2 object
 * header of the file at `path` (rewriting each header's checksum), so that the same content
 * written twice gives the same bytes (h5wasm offers no way to turn time tracking off). A header
 * is only touched where its stored checksum matches: bytes that merely look like "OHDR" are
 * left alone. Returns how many headers were changed.
 */
export function clearH5Times(path: string): number {
  // Files goodnet writes are data sets and models (tens of MB); past 1 GiB, leave the times.
  if (statSync(path).size > 2 ** 30) return 0;
  const b = new Uint8Array(readFileSync(path));
  const edits: [number, number][] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let changed = 0;
  for (let p = b.indexOf(0x4f); p >= 0 && p + 10 < b.length; p = b.indexOf(0x4f, p + 1)) {
    if (b[p + 1] !== 0x48 || b[p + 2] !== 0x44 || b[p + 3] !== 0x52 || b[p + 4] !== 2) continue; // "OHDR", version 2
    const flags = b[p + 5]!;
    if (!(flags & 0x20)) continue; // no times stored
    let q = p + 6 + 16 + (flags & 0x10 ? 4 : 0);
    const width = 1 << (flags & 3);
    if (q + width > b.length) continue;
    let size = 0;
    for (let j = width - 1; j >= 0; j--) size = size * 256 + b[q + j]!;
    q += width;
    const end = q + size; // the checksum's offset
    if (end + 4 > b.length || dv.getUint32(end, true) !== h5Checksum(b, p, end - p)) continue;
    b.fill(0, p + 6, p + 22);
    dv.setUint32(end, h5Checksum(b, p, end - p), true);
    edits.push([p + 6, 16], [end, 4]);
    changed++;
  }
  if (edits.length > 0) {
    const fd = openSync(path, 'r+');
    try {
      for (const [at, n] of edits) writeSync(fd, b, at, n, at);
    } finally {
      closeSync(fd);
    }
  }
  return changed;
}

/** Read a child by path, or undefined (h5wasm throws or returns null for missing links). */
export function h5Get(parent: H5Group, name: string): ReturnType<H5Group['get']> | undefined {
  let obj: ReturnType<H5Group['get']> | undefined;
  try {
    obj = parent.get(name) ?? undefined;
  } catch {
    return undefined;
  }
  checkStoredHere(obj, name, openedAs.get(String(parent.file_id)));
  return obj;
}

/**
 * Refuse what would make HDF5 read outside the named file: an external link, or a virtual
 * dataset whose data lives in other files (a missing source file would read as zeros).
 * A virtual dataset mapping only the same file ('.') is allowed.
 */
export function checkStoredHere(obj: unknown, name: string, file?: string): void {
  if (obj === undefined || obj === null || typeof obj !== 'object') return;
  const o = obj as { type?: string; filename?: string; metadata?: { virtual_sources?: { file_name: string }[] } };
  if (o.type === 'ExternalLink') {
    throw new GoodnetError(`'${name}' is an external link to ${o.filename ?? 'another file'}; only data stored in this file is read`, file);
  }
  if (o.type === 'Dataset') {
    let sources: { file_name: string }[] | undefined;
    try {
      sources = o.metadata?.virtual_sources;
    } catch {
      sources = undefined;
    }
    const outside = sources?.filter((v) => v.file_name !== '.');
    if (outside?.length) {
      throw new GoodnetError(`'${name}' is a virtual dataset reading ${outside[0]!.file_name}; only data stored in this file is read`, file);
    }
  }
}

/** Attribute value as a JS value; strings come back as strings, arrays as arrays. */
export function h5Attr(obj: { attrs: Record<string, { value: unknown }> }, name: string): unknown {
  try {
    const a = obj.attrs[name];
    return a === undefined ? undefined : a.value;
  } catch {
    return undefined;
  }
}
