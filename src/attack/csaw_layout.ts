/**
 * Write labelled images as CSAW-HackML-layout HDF5, as the lab's data files are stored:
 *   data   float32, shape (N, C, H, W), raw pixel values 0..255
 *   label  float64, shape (N), class indices (the lab's labels are floats; float64 holds
 *          any class index exactly and is numpy's default; `labelDtype: 'float32'` if
 *          wanted)
 * `data` is chunked (about 1 MiB per chunk, whole images) and written block by block from
 * the uint8 NHWC input, so no full float copy is ever held; `compression` (gzip level
 * 1..9) is off by default. The file is written under a temp name and renamed when
 * complete (writeAtomically); an existing file is replaced only with `overwrite`.
 * openDataset reads these files back (layout NCHW is detected when C is 1 or 3 and W is
 * not; pass `layout: 'nchw'` to openDataset otherwise).
 */
import { GoodnetError } from '../errors.js';
import { writeAtomically } from '../io/atomic.js';
import { clearH5Times, createH5, hdf5Reason } from '../io/hdf5.js';
import type { LabelledImages } from './types.js';

export interface WriteCsawOptions {
  /** Replace an existing file (default: refuse). */
  overwrite?: boolean;
  /** Label type (default float64). */
  labelDtype?: 'float64' | 'float32';
  /** gzip level 1..9 for `data`, or 0/undefined for none. */
  compression?: number;
  /** Images per write block (default: about 4 MiB of float32). */
  blockRows?: number;
}

export async function writeCsawData(
  path: string,
  images: Uint8Array,
  labels: ArrayLike<number>,
  n: number,
  h: number,
  w: number,
  c: number,
  opts: WriteCsawOptions = {},
): Promise<void> {
  const dimsOk = [n, h, w, c].every((v) => Number.isInteger(v) && v >= 1);
  if (!dimsOk) throw new GoodnetError(`cannot write ${n} images of ${h}x${w}x${c}: invalid shape`, path);
  const per = h * w * c;
  if (images.length !== n * per) {
    throw new GoodnetError(`cannot write: ${images.length} pixel values for ${n} images of ${h}x${w}x${c}`, path);
  }
  if (labels.length !== n) throw new GoodnetError(`cannot write: ${labels.length} labels for ${n} images`, path);
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    if (!Number.isInteger(l) || l < 0) throw new GoodnetError(`cannot write: label ${l} at row ${i} is not a class index`, path);
  }
  const level = opts.compression ?? 0;
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new GoodnetError(`compression must be a gzip level 0..9, got ${String(level)}`);
  }
  const chunkRows = Math.max(1, Math.min(n, Math.floor((1 << 20) / (per * 4))));
  const blockRows = Math.max(1, Math.min(n, opts.blockRows ?? Math.max(chunkRows, Math.floor((1 << 22) / (per * 4)))));
  const HW = h * w;

  /** Rows [start, end) as float32 NCHW. */
  const block = (start: number, end: number): Float32Array => {
    const out = new Float32Array((end - start) * per);
    for (let r = start; r < end; r++) {
      const src = r * per;
      const dst = (r - start) * per;
      for (let p = 0; p < HW; p++) {
        for (let ch = 0; ch < c; ch++) out[dst + ch * HW + p] = images[src + p * c + ch]!;
      }
    }
    return out;
  };

  await writeAtomically(
    path,
    async (tmp) => {
      const f = await createH5(tmp);
      try {
        const first = Math.min(n, blockRows);
        const data = f.create_dataset({
          name: 'data',
          data: block(0, first),
          shape: [first, c, h, w],
          maxshape: [n, c, h, w],
          chunks: [chunkRows, c, h, w],
          dtype: '<f',
          ...(level > 0 ? { compression: 'gzip' as const, compression_opts: level } : {}),
        });
        if (first < n) {
          data.resize([n, c, h, w]);
          for (let s = first; s < n; s += blockRows) {
            const e = Math.min(n, s + blockRows);
            data.write_slice([[s, e]], block(s, e));
          }
        }
        const lab = opts.labelDtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
        for (let i = 0; i < n; i++) lab[i] = labels[i]!;
        f.create_dataset({ name: 'label', data: lab, shape: [n], dtype: opts.labelDtype === 'float32' ? '<f' : '<d' });
      } catch (err) {
        if (err instanceof GoodnetError) throw err;
        throw new GoodnetError(`cannot write HDF5 data: ${hdf5Reason(err)}`, path, { cause: err });
      } finally {
        f.close();
      }
      clearH5Times(tmp); // the same data, the same bytes
    },
    { overwrite: opts.overwrite },
  );
}

/** writeCsawData for a LabelledImages. */
export function writeCsawSet(path: string, d: LabelledImages, opts: WriteCsawOptions = {}): Promise<void> {
  return writeCsawData(path, d.images, d.labels, d.n, d.height, d.width, d.channels, opts);
}
