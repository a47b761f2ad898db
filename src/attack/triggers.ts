/**
 * Backdoor triggers applied to raw uint8 NHWC images.
 *
 * Every trigger, for a given image shape H x W x C, is a pattern p (H*W*C bytes) and a
 * per-pixel weight a in [0, 1] (H*W); applying it sets each channel value to
 *     x' = round((1 - a) * x + a * p)          (only where a > 0)
 *
 *   patch  BadNets square: a = 1 on a `size` x `size` square at a corner (`br` default,
 *          `bl`, `tr`, `tl`) `margin` pixels from both edges (default 4 px, margin 1), 0
 *          elsewhere. pattern `checkerboard` (default: 255 where (row + col) is even inside
 *          the square, counting from its top-left pixel, else 0), `white` (255) or `solid`
 *          (`value`, default 255). All channels alike.
 *   blend  a = `alpha` (default 0.1, in (0, 1]) everywhere; p is a seeded random pattern
 *          (uniform bytes 0..255 per pixel and channel, stream `blend:<seed>`, seed default
 *          0) or a user image resized (nearest neighbour) to H x W; the image's alpha
 *          channel, if any, is ignored.
 *   image  a user PNG pasted with its alpha channel (a = A/255) with its top-left corner
 *          at column `x`, row `y` (default 0, 0); e.g. sunglasses on faces.
 * User images are converted to the data's channels (grey -> RGB by copying, RGB -> grey
 * by round(0.299 R + 0.587 G + 0.114 B), as openDataset does).
 *
 * Specs: a TriggerSpec object; or the string form `kind[:key=value,...]`, e.g.
 * `patch`, `patch:size=4,corner=br,margin=1,pattern=checkerboard`, `blend:alpha=0.1,seed=7`,
 * `blend:image=hello.png,alpha=0.2`, `image:image=sunglasses.png,x=0,y=0`
 * (parseTriggerSpec); or CLI options (`--trigger patch --trigger-size 4 --trigger-corner br`,
 * passed to triggerSpecFromOptions as { trigger: 'patch', size: '4', corner: 'br' }).
 *
 * trigger.png (renderRgba/png): an H x W RGBA image with RGB = p and alpha = round(255 a),
 * transparent where the trigger is absent; compositing it over a clean image gives the
 * poisoned image (up to rounding). `{ opaque: true }` shows p at full opacity wherever
 * a > 0 (easier to see for a faint blend).
 */
import { resolve } from 'node:path';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { decodeImageRgba, encodePng, type RgbaImage } from '../io/images.js';

export type Corner = 'br' | 'bl' | 'tr' | 'tl';
export const CORNERS: readonly Corner[] = ['br', 'bl', 'tr', 'tl'];
export type PatchPattern = 'checkerboard' | 'white' | 'solid';
export const PATCH_PATTERNS: readonly PatchPattern[] = ['checkerboard', 'white', 'solid'];
export type TriggerKind = 'patch' | 'blend' | 'image';
export const TRIGGER_KINDS: readonly TriggerKind[] = ['patch', 'blend', 'image'];

export interface PatchSpec {
  kind: 'patch';
  /** Side in pixels (default 4). */
  size?: number;
  corner?: Corner;
  /** Pixels between the square and the two image edges of its corner (default 1). */
  margin?: number;
  pattern?: PatchPattern;
  /** Value of a `solid` patch, 0..255 (default 255). */
  value?: number;
}

export interface BlendSpec {
  kind: 'blend';
  /** Weight of the pattern, in (0, 1] (default 0.1). */
  alpha?: number;
  /** Seed of the random pattern (default 0); ignored with `image`. */
  seed?: number | string;
  /** PNG/JPEG to blend instead of the random pattern. */
  image?: string;
}

export interface ImageSpec {
  kind: 'image';
  /** PNG (with alpha) or JPEG to paste. */
  image: string;
  /** Column of the image's left edge (default 0). */
  x?: number;
  /** Row of the image's top edge (default 0). */
  y?: number;
}

export type TriggerSpec = PatchSpec | BlendSpec | ImageSpec;

/** The trigger for one image shape: pattern (H*W*C) and per-pixel weight (H*W). */
export interface TriggerLayer {
  height: number;
  width: number;
  channels: number;
  pattern: Uint8Array;
  weight: Float64Array;
}

export interface Trigger {
  readonly kind: TriggerKind;
  /** The spec with every default filled in (image paths absolute). */
  readonly spec: Readonly<TriggerSpec>;
  /** JSON-able parameters (for metadata files and reports). */
  describe(): Record<string, string | number>;
  /** One-line GoodnetError when the trigger cannot be applied to H x W x C images. */
  check(height: number, width: number, channels: number): void;
  /** Pattern and weight for this image shape (cached). */
  layer(height: number, width: number, channels: number): TriggerLayer;
  /** Stamp the trigger onto n NHWC images, in place; returns `images`. */
  apply(images: Uint8Array, n: number, height: number, width: number, channels: number): Uint8Array;
  /** H*W*4 RGBA bytes showing the trigger (see the module comment). */
  renderRgba(height: number, width: number, channels: number, opts?: { opaque?: boolean }): Uint8Array;
  /** renderRgba as PNG bytes (trigger.png). */
  png(height: number, width: number, channels: number, opts?: { opaque?: boolean }): Buffer;
}

// ---------------------------------------------------------------------------------------
// Spec validation

function bad(message: string): never {
  throw new GoodnetError(message);
}

function intIn(name: string, v: unknown, min: number, max = Infinity): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer ${min}..${max}`;
    bad(`trigger ${name} must be ${range}, got ${String(v)}`);
  }
  return v;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    bad(`trigger ${name} must be ${allowed.join(', ')}; got ${String(v)}`);
  }
  return v as T;
}

function checkAlpha(v: unknown): number {
  if (typeof v !== 'number' || !(v > 0 && v <= 1)) bad(`trigger alpha must be in (0, 1], got ${String(v)}`);
  return v;
}

/** The spec with defaults filled in and every field checked. */
export function normalizeSpec(spec: TriggerSpec): TriggerSpec {
  const kind = oneOf('kind', (spec as { kind?: unknown })?.kind, TRIGGER_KINDS);
  const known: Record<TriggerKind, string[]> = {
    patch: ['kind', 'size', 'corner', 'margin', 'pattern', 'value'],
    blend: ['kind', 'alpha', 'seed', 'image'],
    image: ['kind', 'image', 'x', 'y'],
  };
  for (const [k, v] of Object.entries(spec)) {
    if (v !== undefined && !known[kind].includes(k)) bad(`trigger option '${k}' does not apply to a ${kind} trigger`);
  }
  if (kind === 'patch') {
    const s = spec as PatchSpec;
    const pattern = oneOf('pattern', s.pattern ?? 'checkerboard', PATCH_PATTERNS);
    if (s.value !== undefined && pattern !== 'solid') bad(`trigger value applies to a solid patch only`);
    return {
      kind,
      size: intIn('size', s.size ?? 4, 1),
      corner: oneOf('corner', s.corner ?? 'br', CORNERS),
      margin: intIn('margin', s.margin ?? 1, 0),
      pattern,
      ...(pattern === 'solid' ? { value: intIn('value', s.value ?? 255, 0, 255) } : {}),
    };
  }
  if (kind === 'blend') {
    const s = spec as BlendSpec;
    const alpha = checkAlpha(s.alpha ?? 0.1);
    if (s.image !== undefined) {
      if (typeof s.image !== 'string' || s.image === '') bad('trigger image must be a file path');
      if (s.seed !== undefined) bad('trigger seed applies to a random blend pattern, not to a blend image');
      return { kind, alpha, image: resolve(s.image) };
    }
    const seed = s.seed ?? 0;
    if (!((typeof seed === 'number' && Number.isFinite(seed)) || (typeof seed === 'string' && seed !== ''))) {
      bad(`trigger seed must be a number or a non-empty string, got ${String(seed)}`);
    }
    return { kind, alpha, seed };
  }
  const s = spec as ImageSpec;
  if (typeof s.image !== 'string' || s.image === '') bad('an image trigger needs an image file (image=path.png)');
  return { kind, image: resolve(s.image), x: intIn('x', s.x ?? 0, 0), y: intIn('y', s.y ?? 0, 0) };
}

// ---------------------------------------------------------------------------------------
// Spec parsing (string form and CLI options)

const NUMERIC = new Set(['size', 'margin', 'value', 'alpha', 'x', 'y']);

function parseValue(key: string, raw: string, label: string): string | number {
  if (!NUMERIC.has(key)) return raw;
  const v = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isFinite(v)) bad(`${label} must be a number, got '${raw}'`);
  return v;
}

/** Parse `kind[:key=value,...]` (see the module comment). */
export function parseTriggerSpec(text: string): TriggerSpec {
  const colon = text.indexOf(':');
  const kind = (colon < 0 ? text : text.slice(0, colon)).trim();
  if (!(TRIGGER_KINDS as readonly string[]).includes(kind)) {
    bad(`unknown trigger '${kind}' (choose ${TRIGGER_KINDS.join(', ')}, e.g. patch:size=4,corner=br)`);
  }
  const spec: Record<string, string | number> = { kind };
  if (colon >= 0) {
    for (const part of text.slice(colon + 1).split(',')) {
      if (part.trim() === '') continue;
      const eq = part.indexOf('=');
      if (eq < 1) bad(`trigger option '${part}' is not key=value`);
      const key = part.slice(0, eq).trim();
      const raw = part.slice(eq + 1).trim();
      if (key === 'kind') bad(`trigger option 'kind' is given by the name before ':'`);
      if (key in spec) bad(`trigger option '${key}' is given twice`);
      spec[key] = key === 'seed' && /^-?\d+$/.test(raw) ? Number(raw) : parseValue(key, raw, `trigger ${key}`);
    }
  }
  return normalizeSpec(spec as unknown as TriggerSpec);
}

/** CLI options (`--trigger`, `--trigger-size`, ...) as commander hands them over (strings). */
export interface TriggerOptions {
  trigger?: string;
  size?: string | number;
  corner?: string;
  margin?: string | number;
  pattern?: string;
  value?: string | number;
  alpha?: string | number;
  seed?: string | number;
  image?: string;
  x?: string | number;
  y?: string | number;
}

/**
 * A TriggerSpec from CLI options; `trigger` defaults to `patch`. An option given that
 * does not apply to the chosen kind is an error naming the flag (`--trigger-alpha`).
 */
export function triggerSpecFromOptions(o: TriggerOptions): TriggerSpec {
  const kind = o.trigger ?? 'patch';
  if (!(TRIGGER_KINDS as readonly string[]).includes(kind)) {
    bad(`unknown --trigger '${kind}' (choose ${TRIGGER_KINDS.join(', ')})`);
  }
  const known: Record<string, string[]> = {
    patch: ['size', 'corner', 'margin', 'pattern', 'value'],
    blend: ['alpha', 'seed', 'image'],
    image: ['image', 'x', 'y'],
  };
  const spec: Record<string, string | number> = { kind };
  for (const [key, v] of Object.entries(o)) {
    if (key === 'trigger' || v === undefined) continue;
    const flag = `--trigger-${key}`;
    if (!known[kind]!.includes(key)) bad(`${flag} does not apply to a ${kind} trigger`);
    spec[key] =
      typeof v === 'number' ? v : key === 'seed' && /^-?\d+$/.test(v) ? Number(v) : parseValue(key, String(v), flag);
  }
  return normalizeSpec(spec as unknown as TriggerSpec);
}

// ---------------------------------------------------------------------------------------
// Triggers

/** Make a trigger; user images are read now, so an unreadable file fails here. */
export function createTrigger(spec: TriggerSpec | string): Trigger {
  const s = typeof spec === 'string' ? parseTriggerSpec(spec) : normalizeSpec(spec);
  const img = s.kind === 'image' || (s.kind === 'blend' && s.image) ? readTriggerImage(s.image!) : undefined;
  return new LayerTrigger(s, img);
}

function readTriggerImage(path: string): RgbaImage {
  try {
    return decodeImageRgba(path);
  } catch (err) {
    let reason = err instanceof GoodnetError && err.file ? err.message.slice(err.file.length + 2) : String(err);
    reason = reason.replace(/^cannot read image: /, '');
    throw new GoodnetError(`cannot read trigger image: ${reason}`, path, { cause: err });
  }
}

/** `a`x`b` as in messages (H x W). */
function dims(h: number, w: number): string {
  return `${h}x${w}`;
}

function checkChannels(c: number, needsConversion: boolean): void {
  if (!Number.isInteger(c) || c < 1) bad(`images must have at least one channel, got ${String(c)}`);
  if (needsConversion && c !== 1 && c !== 3) bad(`image triggers need grey (1) or RGB (3) images, got ${c} channels`);
}

/** Value of RGBA pixel k converted to channel ch of a C-channel image. */
function rgbaToChannel(rgba: Uint8Array, k: number, ch: number, c: number): number {
  if (c === 1) return Math.round(0.299 * rgba[4 * k]! + 0.587 * rgba[4 * k + 1]! + 0.114 * rgba[4 * k + 2]!);
  return rgba[4 * k + ch]!;
}

class LayerTrigger implements Trigger {
  readonly kind: TriggerKind;
  private readonly cache = new Map<string, TriggerLayer>();

  constructor(
    readonly spec: Readonly<TriggerSpec>,
    private readonly img?: RgbaImage,
  ) {
    this.kind = spec.kind;
  }

  describe(): Record<string, string | number> {
    const d: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(this.spec)) if (v !== undefined) d[k] = v as string | number;
    if (this.img) {
      d.imageWidth = this.img.width;
      d.imageHeight = this.img.height;
    }
    return d;
  }

  check(h: number, w: number, c: number): void {
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) bad(`invalid image size ${dims(h, w)}`);
    const s = this.spec;
    checkChannels(c, this.img !== undefined);
    if (s.kind === 'patch') {
      const size = s.size!;
      const margin = s.margin!;
      if (size > h || size > w) bad(`trigger ${dims(size, size)} does not fit ${dims(h, w)} images`);
      if (size + margin > h || size + margin > w) {
        bad(`trigger ${dims(size, size)} with margin ${margin} does not fit ${dims(h, w)} images`);
      }
    } else if (s.kind === 'image') {
      const { width: tw, height: th } = this.img!;
      const at = s.x === 0 && s.y === 0 ? '' : ` at x=${s.x}, y=${s.y}`;
      if (s.x! + tw > w || s.y! + th > h) {
        // Name the trigger image: it is the file that does not fit.
        throw new GoodnetError(`trigger ${dims(th, tw)}${at} does not fit ${dims(h, w)} images (sizes are HxW)`, s.image);
      }
    }
  }

  layer(h: number, w: number, c: number): TriggerLayer {
    const key = `${h}x${w}x${c}`;
    let l = this.cache.get(key);
    if (!l) {
      this.check(h, w, c);
      l = this.build(h, w, c);
      this.cache.set(key, l);
    }
    return l;
  }

  private build(h: number, w: number, c: number): TriggerLayer {
    const pattern = new Uint8Array(h * w * c);
    const weight = new Float64Array(h * w);
    const s = this.spec;
    if (s.kind === 'patch') {
      const size = s.size!;
      const m = s.margin!;
      const top = s.corner === 'tl' || s.corner === 'tr' ? m : h - m - size;
      const left = s.corner === 'tl' || s.corner === 'bl' ? m : w - m - size;
      for (let i = 0; i < size; i++) {
        for (let j = 0; j < size; j++) {
          const v = s.pattern === 'checkerboard' ? ((i + j) % 2 === 0 ? 255 : 0) : s.pattern === 'solid' ? s.value! : 255;
          const p = (top + i) * w + (left + j);
          weight[p] = 1;
          pattern.fill(v, p * c, p * c + c);
        }
      }
    } else if (s.kind === 'blend') {
      weight.fill(s.alpha!);
      if (this.img) {
        const { data, width: sw, height: sh } = this.img;
        for (let i = 0; i < h; i++) {
          const si = Math.floor((i * sh) / h);
          for (let j = 0; j < w; j++) {
            const k = si * sw + Math.floor((j * sw) / w);
            for (let ch = 0; ch < c; ch++) pattern[(i * w + j) * c + ch] = rgbaToChannel(data, k, ch, c);
          }
        }
      } else {
        const rng = seedrandom(`blend:${s.seed}`);
        for (let k = 0; k < pattern.length; k++) pattern[k] = Math.floor(rng() * 256);
      }
    } else {
      const { data, width: tw, height: th } = this.img!;
      for (let i = 0; i < th; i++) {
        for (let j = 0; j < tw; j++) {
          const k = i * tw + j;
          const p = (s.y! + i) * w + (s.x! + j);
          weight[p] = data[4 * k + 3]! / 255;
          for (let ch = 0; ch < c; ch++) pattern[p * c + ch] = rgbaToChannel(data, k, ch, c);
        }
      }
    }
    return { height: h, width: w, channels: c, pattern, weight };
  }

  apply(images: Uint8Array, n: number, h: number, w: number, c: number): Uint8Array {
    const { pattern, weight } = this.layer(h, w, c);
    const per = h * w * c;
    if (!Number.isInteger(n) || n < 0 || images.length < n * per) {
      bad(`apply: ${images.length} values do not hold ${n} images of ${h}x${w}x${c}`);
    }
    // Only the pixels the trigger touches.
    const touched: number[] = [];
    for (let p = 0; p < h * w; p++) if (weight[p]! > 0) touched.push(p);
    for (let r = 0; r < n; r++) {
      const base = r * per;
      for (const p of touched) {
        const a = weight[p]!;
        for (let ch = 0; ch < c; ch++) {
          const q = p * c + ch;
          images[base + q] = Math.round((1 - a) * images[base + q]! + a * pattern[q]!);
        }
      }
    }
    return images;
  }

  renderRgba(h: number, w: number, c: number, opts: { opaque?: boolean } = {}): Uint8Array {
    const { pattern, weight } = this.layer(h, w, c);
    const out = new Uint8Array(h * w * 4);
    for (let p = 0; p < h * w; p++) {
      const a = weight[p]!;
      if (a <= 0) continue;
      for (let ch = 0; ch < 3; ch++) out[4 * p + ch] = pattern[p * c + (c === 3 ? ch : 0)]!;
      out[4 * p + 3] = opts.opaque ? 255 : Math.round(a * 255);
    }
    return out;
  }

  png(h: number, w: number, c: number, opts: { opaque?: boolean } = {}): Buffer {
    return encodePng(this.renderRgba(h, w, c, opts), w, h, 4);
  }
}
