/**
 * Inputs are opened only as what the user named: regular files (never a FIFO, which would
 * block forever, a device or a socket), and, for files a model folder lists (tfjs shards,
 * model.json), only when they really lie inside that folder after following symbolic
 * links. Loaders call these before reading a byte; errors are one-line GoodnetErrors
 * naming the file. Also the PNG header check that refuses invalid bit depth / colour
 * type combinations before any decoder sees the pixels.
 */
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { resolve, sep } from 'node:path';
import { GoodnetError } from '../errors.js';

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a folder';
  return 'not a regular file';
}

function statOrThrow(path: string): Stats {
  try {
    return statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new GoodnetError('file not found (or a dangling link)', path);
    if (code === 'ELOOP') throw new GoodnetError('too many levels of symbolic links', path);
    if (code === 'EACCES') throw new GoodnetError('permission denied', path);
    throw new GoodnetError(`cannot read: ${code ?? (err as Error).message}`, path, { cause: err });
  }
}

export interface RegularFileOptions {
  /** The file must lie inside this folder once every symbolic link is followed. */
  within?: string;
  /** Largest size accepted, in bytes. */
  maxBytes?: number;
}

/**
 * Check that `path` is a regular file (following links, which stat does without opening:
 * a FIFO is never opened) and, with `within`, that its real path lies inside that folder.
 * Returns its stats.
 */
export function checkRegularFile(path: string, o: RegularFileOptions = {}): Stats {
  const st = statOrThrow(path);
  if (!st.isFile()) throw new GoodnetError(`is ${kindOf(st)}; only regular files are read`, path);
  if (o.within !== undefined) {
    const root = realpathSync(resolve(o.within));
    const real = realpathSync(resolve(path));
    if (!real.startsWith(root.endsWith(sep) ? root : root + sep)) {
      throw new GoodnetError(`is a link to a file outside the folder ${o.within}; refused`, path);
    }
  }
  if (o.maxBytes !== undefined && st.size > o.maxBytes) {
    throw new GoodnetError(`is ${st.size} bytes, more than the ${o.maxBytes} accepted`, path);
  }
  return st;
}

/**
 * Refuse `path` when it exists and is not a regular file (a FIFO, device, socket or
 * folder); a path that cannot be stat'ed is left to the caller's own error.
 */
export function refuseSpecialFile(path: string): void {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  if (!st.isFile()) throw new GoodnetError(`is ${kindOf(st)}; only regular files are read`, path);
}

/**
 * Open a regular file for reading without ever blocking: O_NONBLOCK makes a FIFO that
 * appeared after the check open at once, and the descriptor is checked again (fstat)
 * before it is returned. The caller closes it.
 */
export function openRegularFile(path: string, o: RegularFileOptions = {}): number {
  checkRegularFile(path, o);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new GoodnetError(`cannot open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path, { cause: err });
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new GoodnetError(`is ${kindOf(st)}; only regular files are read`, path);
  }
  return fd;
}

/** Read a whole regular file (see openRegularFile). */
export function readRegularFile(path: string, o: RegularFileOptions = {}): Buffer {
  const fd = openRegularFile(path, o);
  try {
    const size = fstatSync(fd).size;
    if (o.maxBytes !== undefined && size > o.maxBytes) throw new GoodnetError(`is ${size} bytes, more than the ${o.maxBytes} accepted`, path);
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return off === size ? buf : buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------
// PNG header

/** Bit depths the PNG specification allows for each colour type (PNG 1.2, table 11.1). */
const PNG_DEPTHS: Record<number, readonly number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

/**
 * Validate a PNG's IHDR (`head` holds the file's first 33 bytes): width and height in
 * 1..2^31-1, a bit depth allowed for the colour type, compression and filter method 0,
 * interlace 0 or 1. A 4-bit RGB PNG, say, is refused here instead of decoding to garbage.
 */
export function checkPngHeader(head: Uint8Array, path: string): void {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length < 33 || b.toString('latin1', 12, 16) !== 'IHDR') throw new GoodnetError('corrupt PNG image (no IHDR header)', path);
  const width = b.readUInt32BE(16);
  const height = b.readUInt32BE(20);
  const depth = b[24]!;
  const colour = b[25]!;
  if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff) {
    throw new GoodnetError(`invalid PNG image (size ${width}x${height})`, path);
  }
  const allowed = PNG_DEPTHS[colour];
  if (allowed === undefined) throw new GoodnetError(`invalid PNG image (colour type ${colour})`, path);
  if (!allowed.includes(depth)) {
    throw new GoodnetError(`invalid PNG image (bit depth ${depth} is not allowed for colour type ${colour}; allowed: ${allowed.join(', ')})`, path);
  }
  if (b[26] !== 0 || b[27] !== 0 || (b[28] !== 0 && b[28] !== 1)) {
    throw new GoodnetError(`invalid PNG image (compression ${b[26]}, filter ${b[27]}, interlace ${b[28]})`, path);
  }
}
