/**
 * onnxruntime-node as a forward-only engine. Given the ONNX bytes of a model (see
 * io/onnx_write.ts onnxBytes) it runs batches of NHWC float32 images and returns the class
 * scores. The graph's input layout is honoured: NHWC graphs (goodnet's own exports) get the
 * batch as it is, NCHW graphs (original PyTorch exports) get it transposed on the JS side.
 * onnxruntime-node is imported only when an engine is created.
 */
import { availableParallelism } from 'node:os';
import { GoodnetError } from '../errors.js';

/**
 * Forward engine of a forward-only pass: 'tfjs' (tfjs-layers on the current backend), 'ort'
 * (onnxruntime-node on the model's ONNX form; an error when it has none) or 'auto' (the
 * default: ort when the model has an ONNX form and the backend is not cpu, else tfjs).
 */
export type EngineName = 'auto' | 'tfjs' | 'ort';
export const ENGINES: readonly EngineName[] = ['auto', 'tfjs', 'ort'];
export const DEFAULT_ENGINE: EngineName = 'auto';

/**
 * Default intra-op threads of the ort engine: 0, the core count (os.availableParallelism()).
 * The class scores do not depend on it (bit-identical with 1 and 2 threads on the lab's
 * DeepID/VGG-BN/ResNet test sets and on the full CSAW DeepID; test/ort_engine.test.ts).
 */
export const DEFAULT_ORT_THREADS = 0;

export interface OrtEngineOptions {
  /** Layout of the graph's image input: 'nhwc' (goodnet exports) or 'nchw' (original torch graphs). */
  layout: 'nhwc' | 'nchw';
  /** One image, channels-last [H, W, C]. */
  inputShape: readonly [number, number, number];
  /** onnxruntime intra-op threads (default DEFAULT_ORT_THREADS; 0: the core count). */
  threads?: number;
  /** Named in errors. */
  source?: string;
}

type Ort = typeof import('onnxruntime-node');

/** Transpose n images from NHWC to NCHW into `out`. */
export function nhwcToNchw(x: Float32Array, n: number, h: number, w: number, c: number, out: Float32Array = new Float32Array(n * h * w * c)): Float32Array {
  const hw = h * w, per = hw * c;
  for (let b = 0; b < n; b++) {
    const base = b * per;
    for (let p = 0; p < hw; p++) {
      const src = base + p * c;
      for (let ch = 0; ch < c; ch++) out[base + ch * hw + p] = x[src + ch]!;
    }
  }
  return out;
}

export class OrtEngine {
  private scratch?: Float32Array;
  private released = false;

  private constructor(
    private readonly ort: Ort,
    private readonly session: import('onnxruntime-node').InferenceSession,
    readonly layout: 'nhwc' | 'nchw',
    readonly inputShape: readonly [number, number, number],
    readonly threads: number,
    /** The graph's batch size when it is fixed (e.g. a torch export traced with batch 1), else undefined. */
    readonly fixedBatch: number | undefined,
    private readonly source?: string,
  ) {}

  /** Build an onnxruntime session from ONNX bytes. Throws GoodnetError when onnxruntime refuses the graph. */
  static async create(bytes: Uint8Array, options: OrtEngineOptions): Promise<OrtEngine> {
    const ort = await import('onnxruntime-node');
    const t = options.threads ?? DEFAULT_ORT_THREADS;
    const threads = t === 0 ? availableParallelism() : t;
    if (!Number.isInteger(threads) || threads < 1) throw new GoodnetError(`ort threads must be a positive integer, got ${threads}`, options.source);
    let session: import('onnxruntime-node').InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
    } catch (e) {
      throw new GoodnetError(`onnxruntime cannot run the model's ONNX graph (${(e as Error).message.split('\n')[0]}); use --engine tfjs`, options.source, { cause: e });
    }
    if (session.inputNames.length !== 1 || session.outputNames.length < 1) {
      await session.release();
      throw new GoodnetError('the ONNX graph must have one input for --engine ort; use --engine tfjs', options.source);
    }
    // The input's declared shape, when the graph states it, must fit the images.
    const meta = session.inputMetadata?.[0];
    const declared = meta && meta.isTensor ? meta.shape : [];
    const [h, w, c] = options.inputShape;
    const want = options.layout === 'nchw' ? [c, h, w] : [h, w, c];
    if (declared.length > 0) {
      const fits = declared.length === 4 && want.every((d, i) => typeof declared[i + 1] !== 'number' || declared[i + 1] === d);
      if (!fits) {
        await session.release();
        throw new GoodnetError(`the ONNX graph's input is (${declared.join(',')}), not ${options.layout.toUpperCase()} images of ${h}x${w}x${c}; use --engine tfjs`, options.source);
      }
    }
    const b = declared[0];
    const fixedBatch = typeof b === 'number' && b > 0 ? b : undefined;
    return new OrtEngine(ort, session, options.layout, options.inputShape, threads, fixedBatch, options.source);
  }

  /** Class scores (n x K, row-major) of `n` NHWC images in `x`. */
  async predictBatch(x: Float32Array, n: number): Promise<{ scores: Float32Array; classes: number }> {
    if (this.released) throw new Error('OrtEngine used after dispose()');
    const [h, w, c] = this.inputShape;
    const per = h * w * c;
    if (x.length < n * per) throw new GoodnetError(`batch holds ${x.length} values, ${n} images of ${h}x${w}x${c} need ${n * per}`, this.source);
    const fb = this.fixedBatch;
    if (fb === undefined || fb === n) return this.run(x, n);
    // A graph with a fixed batch size: chunks of fb images, the last one padded with zeros.
    let scores: Float32Array | undefined;
    let classes = 0;
    const chunk = new Float32Array(fb * per);
    for (let s = 0; s < n; s += fb) {
      const m = Math.min(fb, n - s);
      chunk.fill(0);
      chunk.set(x.subarray(s * per, (s + m) * per));
      const r = await this.run(chunk, fb);
      classes = r.classes;
      scores ??= new Float32Array(n * classes);
      scores.set(r.scores.subarray(0, m * classes), s * classes);
    }
    return { scores: scores ?? new Float32Array(0), classes };
  }

  private async run(x: Float32Array, n: number): Promise<{ scores: Float32Array; classes: number }> {
    const [h, w, c] = this.inputShape;
    const per = h * w * c;
    const view = x.length === n * per ? x : x.subarray(0, n * per);
    let data: Float32Array, dims: number[];
    if (this.layout === 'nchw') {
      if (!this.scratch || this.scratch.length < n * per) this.scratch = new Float32Array(n * per);
      data = nhwcToNchw(view, n, h, w, c, this.scratch.subarray(0, n * per));
      dims = [n, c, h, w];
    } else {
      data = view;
      dims = [n, h, w, c];
    }
    const feeds = { [this.session.inputNames[0]!]: new this.ort.Tensor('float32', data as unknown as Float32Array<ArrayBuffer>, dims) };
    const outName = this.session.outputNames[0]!;
    const out = (await this.session.run(feeds, [outName]))[outName]!;
    try {
      if (out.type !== 'float32' || out.dims.length !== 2 || out.dims[0] !== n) {
        throw new GoodnetError(`the ONNX graph's output is ${out.type} (${out.dims.join(',')}), not float32 class scores (${n},K); use --engine tfjs`, this.source);
      }
      // Copy (one memcpy, not an element-wise Float32Array.from): the tensor's buffer belongs to onnxruntime.
      return { scores: (out.data as Float32Array).slice(), classes: out.dims[1]! };
    } finally {
      out.dispose();
    }
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.scratch = undefined;
    await this.session.release();
  }
}
