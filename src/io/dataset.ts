/**
 * Labelled image data sets, streamed in batches so that a file never has to fit in
 * memory twice. Sources: CSAW-layout HDF5 (`data` (N,C,H,W) or (N,H,W,C), `label` (N)),
 * and folders of PNG/JPEG images with labels from sub-folder or file names.
 */

/** One batch, channels-last (NHWC), float32, already scaled. */
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
}
