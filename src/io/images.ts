/**
 * PNG/JPEG decoding with sharp (libjpeg-turbo and libpng, the libraries Pillow uses, so a
 * JPEG decodes to the pixels a Python pipeline sees), PNG encoding (pngjs), plus cheap
 * header probing so a folder of images can be checked for size and channel count without
 * decoding it.
 *
 * Decoded pixels are 8-bit, interleaved (H, W, C), with C = 1 (grey) or 3 (RGB): alpha is
 * dropped, palettes are expanded, 16-bit PNGs are reduced to 8 bits. The decoders are
 * synchronous (sharp runs in a worker thread they wait for); decodeImageAsync decodes in
 * this thread without blocking it.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { refuseSpecialFile } from './safe_open.js';
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { PNG } from 'pngjs';
import { createRequire } from 'node:module';
import { GoodnetError, oneLine } from '../errors.js';
import type { RawPixels, sharpDecode } from './sharp_decode.js';

/** Refuse images larger than this many megapixels (guards memory on hostile files). */
export const MAX_RESOLUTION_MP = 100;

export type ImageFormat = 'png' | 'jpeg';

export interface DecodedImage {
  /** width*height*channels bytes, row-major, channels interleaved. */
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 (grey) or 3 (RGB). */
  channels: 1 | 3;
}

export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
  /** Channels decodeImage will deliver: 1 (grey) or 3 (RGB). */
  channels: 1 | 3;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** True for names ending in .png, .jpg or .jpeg (any case). */
export function isImageFileName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

/**
 * Label encoded in an image file name: `label43`, `label=43`, `label_43` (any case),
 * e.g. `cl_0-label43.png` → 43. Returns -1 when the name carries no label.
 */
export function imageFileLabel(name: string): number {
  const base = basename(name);
  const stem = base.slice(0, base.length - extname(base).length);
  const m = /label[=_]?(\d+)(?!\d)/i.exec(stem);
  if (!m) return -1;
  const v = Number(m[1]);
  return Number.isSafeInteger(v) ? v : -1;
}

/** Label given by a folder name made only of digits (e.g. `43/`), else -1. */
export function folderLabel(name: string): number {
  if (!/^\d+$/.test(name)) return -1;
  const v = Number(name);
  return Number.isSafeInteger(v) ? v : -1;
}

function sniff(head: Uint8Array): ImageFormat | undefined {
  if (head.length >= 8 && PNG_SIGNATURE.equals(Buffer.from(head.buffer, head.byteOffset, 8))) return 'png';
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  return undefined;
}

/** Format from the file's signature, or undefined when it is neither PNG nor JPEG. */
export function sniffImageFormat(path: string): ImageFormat | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(8);
    const n = readSync(fd, head, 0, 8, 0);
    return sniff(head.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

function ioReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return 'file not found';
  if (e?.code === 'EACCES') return 'permission denied';
  if (e?.code === 'EISDIR') return 'is a directory';
  return oneLine(e instanceof Error ? e.message : String(err));
}

function checkResolution(width: number, height: number, path: string): void {
  if (width <= 0 || height <= 0) throw new GoodnetError(`invalid image size ${width}x${height}`, path);
  if (width * height > MAX_RESOLUTION_MP * 1e6) {
    throw new GoodnetError(
      `image of ${width}x${height} pixels is larger than the ${MAX_RESOLUTION_MP} megapixel limit`,
      path,
    );
  }
}

/** PNG colour type → channels after dropping alpha. */
function pngChannels(colorType: number): 1 | 3 | undefined {
  switch (colorType) {
    case 0: // grey
    case 4: // grey + alpha
      return 1;
    case 2: // RGB
    case 3: // palette
    case 6: // RGBA
      return 3;
    default:
      return undefined;
  }
}

/**
 * Width, height and channel count from the file header only (PNG IHDR, JPEG SOF).
 * Throws a GoodnetError naming the file when it is not a readable PNG/JPEG.
 */
export function probeImage(path: string): ImageInfo {
  let fd: number;
  refuseSpecialFile(path);
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new GoodnetError(`cannot read image: ${ioReason(err)}`, path, { cause: err });
  }
  try {
    const head = Buffer.alloc(33);
    const got = readSync(fd, head, 0, 33, 0);
    const format = sniff(head.subarray(0, got));
    if (format === 'png') {
      if (got < 33 || head.toString('latin1', 12, 16) !== 'IHDR') {
        throw new GoodnetError('corrupt PNG image (no IHDR header)', path);
      }
      const width = head.readUInt32BE(16);
      const height = head.readUInt32BE(20);
      const colorType = head[25]!;
      const channels = pngChannels(colorType);
      if (channels === undefined) throw new GoodnetError(`corrupt PNG image (colour type ${colorType})`, path);
      if (!PNG_BIT_DEPTHS[colorType]!.includes(head[24]!)) {
        throw new GoodnetError(`corrupt PNG image (bit depth ${head[24]} is invalid for colour type ${colorType})`, path);
      }
      checkResolution(width, height, path);
      return { format, width, height, channels };
    }
    if (format === 'jpeg') return probeJpeg(fd, path);
    const ext = extname(path).toLowerCase();
    const what = got === 0 ? 'empty file' : 'no PNG or JPEG signature';
    throw new GoodnetError(`not a valid ${ext === '.png' ? 'PNG' : ext ? 'JPEG' : 'PNG or JPEG'} image (${what})`, path);
  } finally {
    closeSync(fd);
  }
}

function probeJpeg(fd: number, path: string): ImageInfo {
  const buf = Buffer.alloc(10);
  let pos = 2; // after SOI
  for (let guard = 0; guard < 10000; guard++) {
    if (readSync(fd, buf, 0, 2, pos) < 2) break;
    if (buf[0] !== 0xff) break;
    const marker = buf[1]!;
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break; // EOI / SOS before any frame header
    if (readSync(fd, buf, 0, 2, pos + 2) < 2) break;
    const len = buf.readUInt16BE(0);
    if (len < 2) break;
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (readSync(fd, buf, 0, 6, pos + 4) < 6) break;
      const height = buf.readUInt16BE(1);
      const width = buf.readUInt16BE(3);
      const comps = buf[5]!;
      if (comps !== 1 && comps !== 3 && comps !== 4) {
        throw new GoodnetError(`unsupported JPEG image with ${comps} colour components`, path);
      }
      checkResolution(width, height, path);
      return { format: 'jpeg', width, height, channels: comps === 1 ? 1 : 3 };
    }
    pos += 2 + len;
  }
  throw new GoodnetError('corrupt JPEG image (no frame header)', path);
}

let decodeSync: ((bytes: Uint8Array, maxPixels: number) => RawPixels) | undefined;

/** sharp's decode, waited for synchronously (a worker thread does it). */
function sharpDecodeSync(bytes: Uint8Array): RawPixels {
  if (!decodeSync) {
    // synckit is loaded on first use (it costs start-up time to commands that read no images).
    const { createSyncFn } = createRequire(import.meta.url)('synckit') as typeof import('synckit');
    decodeSync = createSyncFn<typeof sharpDecode>(new URL('./image_worker.js', import.meta.url));
  }
  return decodeSync(bytes, MAX_RESOLUTION_MP * 1e6);
}

function readImageFile(path: string): Buffer {
  refuseSpecialFile(path);
  try {
    return readFileSync(path);
  } catch (err) {
    throw new GoodnetError(`cannot read image: ${ioReason(err)}`, path, { cause: err });
  }
}

/** Decode a PNG or JPEG file to 8-bit grey or RGB pixels (alpha dropped). */
export function decodeImage(path: string): DecodedImage {
  return decodeImageBuffer(readImageFile(path), path);
}

/** decodeImage without blocking the event loop (sharp in this thread). */
export async function decodeImageAsync(path: string): Promise<DecodedImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new GoodnetError(`cannot read image: ${ioReason(err)}`, path, { cause: err });
  }
  const header = checkHeader(bytes, path);
  let raw: RawPixels;
  try {
    // Loaded on first use: libvips is not needed by commands that read no images.
    const { sharpDecode: decode } = await import('./sharp_decode.js');
    raw = await decode(bytes, MAX_RESOLUTION_MP * 1e6);
  } catch (err) {
    throw decodeFailure(header.format === 'png' ? 'PNG' : 'JPEG', err, path);
  }
  return toDecoded(raw, header, path);
}

/** Decode PNG/JPEG bytes; `path` only names the image in errors. */
export function decodeImageBuffer(bytes: Uint8Array, path: string): DecodedImage {
  const { raw, header } = decodeRaw(bytes, path);
  return toDecoded(raw, header, path);
}

/** Check the header, then decode with sharp (synchronously); errors name `path`. */
function decodeRaw(bytes: Uint8Array, path: string): { raw: RawPixels; header: ReturnType<typeof checkHeader> } {
  const header = checkHeader(bytes, path);
  try {
    return { raw: sharpDecodeSync(bytes), header };
  } catch (err) {
    throw decodeFailure(header.format === 'png' ? 'PNG' : 'JPEG', err, path);
  }
}

/** Bit depths the PNG specification allows per colour type. */
const PNG_BIT_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

interface Header { format: ImageFormat; width: number; height: number; channels: 1 | 3 }

/** Format, size and delivered channels from the header, checked before decoding. */
function checkHeader(bytes: Uint8Array, path: string): Header {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = sniff(buf.subarray(0, 8));
  if (format === 'png') {
    if (buf.length < 33 || buf.toString('latin1', 12, 16) !== 'IHDR') throw new GoodnetError('corrupt PNG image (no IHDR header)', path);
    const width = buf.readUInt32BE(16);
    const height = buf.readUInt32BE(20);
    const depth = buf[24]!;
    const colorType = buf[25]!;
    const channels = pngChannels(colorType);
    if (channels === undefined) throw new GoodnetError(`corrupt PNG image (colour type ${colorType})`, path);
    if (!PNG_BIT_DEPTHS[colorType]!.includes(depth)) {
      throw new GoodnetError(`corrupt PNG image (bit depth ${depth} is invalid for colour type ${colorType})`, path);
    }
    checkResolution(width, height, path);
    return { format, width, height, channels };
  }
  if (format === 'jpeg') {
    const sof = jpegFrame(buf);
    if (!sof) throw new GoodnetError('corrupt JPEG image (no frame header)', path);
    if (sof.comps !== 1 && sof.comps !== 3 && sof.comps !== 4) {
      throw new GoodnetError(`unsupported JPEG image with ${sof.comps} colour components`, path);
    }
    checkResolution(sof.width, sof.height, path);
    return { format, width: sof.width, height: sof.height, channels: sof.comps === 1 ? 1 : 3 };
  }
  throw new GoodnetError(`not a valid PNG or JPEG image (${buf.length === 0 ? 'empty file' : 'no PNG or JPEG signature'})`, path);
}

/** sharp's pixels -> the header's channel count (1 or 3), alpha dropped, grey expanded if needed. */
function toDecoded(raw: RawPixels, h: Header, path: string): DecodedImage {
  const { width, height, channels: c, data } = raw;
  const n = width * height;
  if (width !== h.width || height !== h.height || data.length < n * c || c < 1 || c > 4) {
    throw new GoodnetError(`corrupt ${h.format === 'png' ? 'PNG' : 'JPEG'} image (decoded ${width}x${height}x${c}, header says ${h.width}x${h.height})`, path);
  }
  if (c === h.channels) return { data: data.length === n * c ? data : data.subarray(0, n * c), width, height, channels: h.channels };
  const out = new Uint8Array(n * h.channels);
  for (let i = 0; i < n; i++) {
    if (h.channels === 1) out[i] = data[i * c]!;
    else if (c < 3) out.fill(data[i * c]!, i * 3, i * 3 + 3);
    else {
      out[i * 3] = data[i * c]!;
      out[i * 3 + 1] = data[i * c + 1]!;
      out[i * 3 + 2] = data[i * c + 2]!;
    }
  }
  return { data: out, width, height, channels: h.channels };
}

function decodeFailure(kind: string, err: unknown, path: string): GoodnetError {
  if (err instanceof GoodnetError) return err;
  const reason = oneLine(err instanceof Error ? err.message : String(err)) || 'unknown error';
  return new GoodnetError(`corrupt ${kind} image, cannot decode: ${reason}`, path, { cause: err });
}

/** The JPEG frame header (SOF): size and colour components, or undefined if not found. */
function jpegFrame(buf: Buffer): { width: number; height: number; comps: number } | undefined {
  let pos = 2;
  while (pos + 4 <= buf.length) {
    if (buf[pos] !== 0xff) return undefined;
    const marker = buf[pos + 1]!;
    if (marker === 0xff) {
      pos += 1;
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined;
    const len = buf.readUInt16BE(pos + 2);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (pos + 10 > buf.length) return undefined;
      return { height: buf.readUInt16BE(pos + 5), width: buf.readUInt16BE(pos + 7), comps: buf[pos + 9]! };
    }
    if (len < 2) return undefined;
    pos += 2 + len;
  }
  return undefined;
}

/**
 * Encode 8-bit pixels (row-major, channels interleaved) as PNG. channels: 1 grey,
 * 2 grey+alpha, 3 RGB, 4 RGBA. Non-byte input (e.g. Float32Array in 0..255) is rounded
 * and clamped to 0..255.
 */
export function encodePng(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new GoodnetError(`encodePng: invalid size ${width}x${height}`);
  }
  const colorType = ({ 1: 0, 2: 4, 3: 2, 4: 6 } as const)[channels];
  if (colorType === undefined) throw new GoodnetError(`encodePng: unsupported channel count ${channels}`);
  const len = width * height * channels;
  if (pixels.length !== len) {
    throw new GoodnetError(
      `encodePng: expected ${len} values for ${width}x${height}x${channels}, got ${pixels.length}`,
    );
  }
  let data: Buffer;
  if (pixels instanceof Uint8Array || pixels instanceof Uint8ClampedArray) {
    data = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  } else {
    data = Buffer.alloc(len);
    for (let i = 0; i < len; i++) {
      const v = Math.round(pixels[i]!);
      data[i] = v > 255 ? 255 : v > 0 ? v : 0; // NaN → 0
    }
  }
  const png = { width, height, data } as unknown as PNG;
  return PNG.sync.write(png, {
    colorType,
    inputColorType: colorType,
    inputHasAlpha: channels === 2 || channels === 4,
    bitDepth: 8,
  });
}

/** 8-bit RGBA pixels (width*height*4, row-major) of a PNG or JPEG, alpha kept. */
export interface RgbaImage {
  data: Uint8Array;
  width: number;
  height: number;
  /** True when the PNG has an alpha channel (colour types 4 and 6, or a palette with transparency). */
  hasAlpha: boolean;
}

/**
 * Decode a PNG (alpha kept) or JPEG (alpha 255) to RGBA. Grey images are expanded to
 * R = G = B. Errors are one-line GoodnetErrors naming the file.
 */
export function decodeImageRgba(path: string): RgbaImage {
  const { raw, header } = decodeRaw(readImageFile(path), path);
  const { width, height, channels: c, data: px } = raw;
  const n = width * height;
  if (width !== header.width || height !== header.height || px.length < n * c || c < 1 || c > 4) {
    throw new GoodnetError(`corrupt ${header.format === 'png' ? 'PNG' : 'JPEG'} image (decoded ${width}x${height}x${c})`, path);
  }
  const data = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const k = i * c;
    const grey = c < 3;
    data[i * 4] = px[k]!;
    data[i * 4 + 1] = px[grey ? k : k + 1]!;
    data[i * 4 + 2] = px[grey ? k : k + 2]!;
    data[i * 4 + 3] = c === 2 || c === 4 ? px[k + c - 1]! : 255;
  }
  return { data, width, height, hasAlpha: header.format === 'png' && (c === 2 || c === 4) };
}
