/**
 * Text widths from a TrueType font's own advance widths, so that vega lays out labels,
 * legends and titles for the font the figures are actually drawn with (DejaVu Sans)
 * instead of its canvas-less guess (0.8 em per character, far too wide).
 *
 * Only what layout needs: the 'cmap' (formats 4 and 12) and 'hmtx' tables; no kerning.
 */
import { GoodnetError } from '../errors.js';

export interface FontMetrics {
  /** Advance width of `text` at `fontSize` px. */
  width(text: string, fontSize: number): number;
}

function tableOffsets(view: DataView, name: string): Map<string, number> {
  const numTables = view.getUint16(4);
  const tables = new Map<string, number>();
  for (let i = 0; i < numTables; i++) {
    const rec = 12 + i * 16;
    const tag = String.fromCharCode(view.getUint8(rec), view.getUint8(rec + 1), view.getUint8(rec + 2), view.getUint8(rec + 3));
    tables.set(tag, view.getUint32(rec + 8));
  }
  for (const t of ['head', 'hhea', 'hmtx', 'cmap']) {
    if (!tables.has(t)) throw new GoodnetError(`not a usable TrueType font (no '${t}' table)`, name);
  }
  return tables;
}

/** Parse a TTF buffer into a width function. `name` only names the font in errors. */
export function parseFontMetrics(bytes: Uint8Array, name = 'font'): FontMetrics {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const t = tableOffsets(view, name);
  const unitsPerEm = view.getUint16(t.get('head')! + 18);
  const numHMetrics = view.getUint16(t.get('hhea')! + 34);
  const hmtx = t.get('hmtx')!;
  const advance = (glyph: number) => view.getUint16(hmtx + 4 * Math.min(glyph, numHMetrics - 1)) / unitsPerEm;

  // Pick the best Unicode subtable: format 12 (full range) over format 4 (BMP).
  const cmap = t.get('cmap')!;
  const n = view.getUint16(cmap + 2);
  let sub4 = -1;
  let sub12 = -1;
  for (let i = 0; i < n; i++) {
    const platform = view.getUint16(cmap + 4 + i * 8);
    const encoding = view.getUint16(cmap + 6 + i * 8);
    const off = cmap + view.getUint32(cmap + 8 + i * 8);
    const format = view.getUint16(off);
    const unicode = platform === 0 || (platform === 3 && (encoding === 1 || encoding === 10));
    if (!unicode) continue;
    if (format === 12) sub12 = off;
    else if (format === 4 && sub4 < 0) sub4 = off;
  }
  const widths = new Map<number, number>();
  if (sub12 >= 0) {
    const groups = view.getUint32(sub12 + 12);
    for (let g = 0; g < groups; g++) {
      const rec = sub12 + 16 + g * 12;
      const start = view.getUint32(rec);
      const end = Math.min(view.getUint32(rec + 4), start + 0x10000);
      const glyph = view.getUint32(rec + 8);
      for (let c = start; c <= end; c++) widths.set(c, advance(glyph + c - start));
    }
  } else if (sub4 >= 0) {
    const segX2 = view.getUint16(sub4 + 6);
    const ends = sub4 + 14;
    const starts = ends + segX2 + 2;
    const deltas = starts + segX2;
    const ranges = deltas + segX2;
    for (let s = 0; s < segX2 / 2; s++) {
      const end = view.getUint16(ends + 2 * s);
      const start = view.getUint16(starts + 2 * s);
      const delta = view.getInt16(deltas + 2 * s);
      const rangeAt = ranges + 2 * s;
      const range = view.getUint16(rangeAt);
      for (let c = start; c <= end && c !== 0xffff; c++) {
        let glyph: number;
        if (range === 0) glyph = (c + delta) & 0xffff;
        else {
          const g = view.getUint16(rangeAt + range + 2 * (c - start));
          glyph = g === 0 ? 0 : (g + delta) & 0xffff;
        }
        if (glyph !== 0) widths.set(c, advance(glyph));
      }
    }
  } else {
    throw new GoodnetError('not a usable TrueType font (no Unicode cmap)', name);
  }
  const fallback = advance(0);
  return {
    width(text: string, fontSize: number): number {
      let w = 0;
      for (const ch of text) w += widths.get(ch.codePointAt(0)!) ?? fallback;
      return w * fontSize;
    },
  };
}
