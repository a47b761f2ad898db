/**
 * The ort training engine: forward + backward of a tfjs-layers classifier in one
 * onnxruntime-node session run (the graph of ort_train_graph.ts), one session per batch
 * size. A step reads the net's current weights, returns the loss, the correct count and
 * every trainable weight's gradient, and folds the batch statistics into the net's
 * BatchNormalization moving averages as tfjs-layers does in training mode. The optimizer
 * step stays with the caller (models/train.ts applies the gradients with the same tfjs
 * optimizer as the tfjs engine). onnxruntime-node is imported only when a trainer is created.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { decodeModel, encodeModel, floatTensor, num, AT, type ModelProto } from '../io/onnx_proto.js';
import { buildTrainGraph, ortTrainObstacle, type TrainGraph, type TrainGraphOptions } from './ort_train_graph.js';
import { ShardWorker, writeOutputs } from './ort_shards.js';
import { WasmAdam } from './adam_wasm.js';

type Ort = typeof import('onnxruntime-node');
type Session = import('onnxruntime-node').InferenceSession;

/** The engines that train (`train()`): tfjs-wasm, or forward + backward in onnxruntime-node. */
export type TrainEngineName = 'tfjs' | 'ort';
/** What `--train-engine` / `TrainOptions.engine` take: an engine, or 'auto' (resolveTrainEngine). */
export type TrainEngineChoice = TrainEngineName | 'auto';
export const TRAIN_ENGINES: readonly TrainEngineChoice[] = ['auto', 'ort', 'tfjs'];
/** The default of `goodnet attack` / `goodnet fineprune` (runAttack, runFinePrune). */
export const DEFAULT_TRAIN_ENGINE: TrainEngineChoice = 'auto';

/**
 * The engine `choice` trains `net` on, before any work: 'auto' is ort unless the net has
 * something the ort engine cannot train (then tfjs, and `why`); 'ort' and 'tfjs' are
 * themselves (a net ort cannot train is refused when its trainer is created). train() also
 * falls back from 'auto' to tfjs when onnxruntime cannot start (no binary for this platform,
 * a graph it refuses), before the first step.
 */
export function resolveTrainEngine(net: tfl.LayersModel, choice: TrainEngineChoice = 'tfjs'): { engine: TrainEngineName; why?: string } {
  if (choice !== 'auto' && choice !== 'ort' && choice !== 'tfjs') throw new GoodnetError(`training engine must be auto, ort or tfjs, got ${String(choice)}`);
  if (choice !== 'auto') return { engine: choice };
  const why = ortTrainObstacle(net);
  return why ? { engine: 'tfjs', why } : { engine: 'ort' };
}

/** How logs name the engine that trains: 'onnxruntime (ort engine)' or 'tfjs-wasm', and why not ort when known. */
export function trainEngineText(engine: TrainEngineName, why?: string): string {
  return `${engine === 'ort' ? 'onnxruntime (ort engine)' : 'tfjs-wasm'}${why ? ` (${why})` : ''}`;
}

export interface OrtTrainerOptions {
  /**
   * Data-parallel threads (default 1; 0: the core count): each batch is split into this many
   * contiguous shards, shard 0 run in this thread and shard i in worker thread i, each in its
   * own onnxruntime session; their gradients are summed in shard order (deterministic for a
   * seed and a thread count). BatchNormalization normalises each shard with its own batch
   * statistics (as PyTorch's DistributedDataParallel without SyncBatchNorm, and the tfjs
   * engine's data-parallel threads); the moving statistics are the shards' updates averaged
   * by shard size.
   */
  threads?: number;
  /** onnxruntime intra-op threads of each session (default 1; 0: the core count). */
  intraOpThreads?: number;
  /**
   * Seed of the Dropout layers' keep masks (default 0): drawn for the whole batch per step, in
   * layer order, so that a seed gives the same masks on any thread count.
   */
  seed?: number;
  /** How the graph is built (tests and benchmarks compare the variants). */
  graph?: TrainGraphOptions;
}

export interface OrtStepResult {
  /** Gradients of the mean loss, in net.trainableWeights order (shapes as the weights). */
  grads: Float32Array[];
  /** Sum over the batch of the per-image losses. */
  lossSum: number;
  /** Images whose argmax equals the label. */
  correct: number;
}

export { ortTrainObstacle };

export class OrtTrainer {
  /** Sessions by batch size ('<n>'), with Adam in the graph ('adam:<n>'), of data-parallel shards ('shard:<n>/<total>'). */
  private readonly sessions = new Map<string, { graph: TrainGraph; session: Session }>();
  private released = false;
  /** The BN layers' statistics outputs and moving weights (the same in every graph of this net). */
  private bnStats: TrainGraph['bnStats'] = [];

  private constructor(
    private readonly ort: Ort,
    readonly net: tfl.LayersModel,
    /** Data-parallel threads (this one and the workers'). */
    readonly threads: number,
    readonly intraOpThreads: number,
    private readonly graphOptions: TrainGraphOptions,
    seed: number,
  ) {
    this.dropRng = seedrandom.alea(`dropout:${seed}`);
    // tfjs-layers rebuilds net.weights on every read: the shapes once, for the per-step paths.
    this.shapes = net.weights.map((v) => v.shape as number[]);
    this.trainableSizes = net.trainableWeights.map((v) => (v.shape as number[]).reduce((p, q) => p * q, 1));
  }
  private readonly dropRng: () => number;
  /** The Dropout masks of the last step (TrainGraph.dropouts order, the whole batch; tests read them). */
  lastMasks: Float32Array[] = [];
  private readonly shapes: number[][];
  private readonly trainableSizes: number[];
  private readonly layouts = new WeakMap<TrainGraph, ReturnType<OrtTrainer['makeLayout']>>();
  /** Shard 0's outputs in the workers' layout (runShards). */
  private mine: Float32Array | undefined;
  /** The data-parallel workers (threads - 1) and the weights they share, made at the first sharded step. */
  private pool: { images: number; workers: ShardWorker[]; weights: Float32Array; offsets: number[] } | undefined;

  /** Check the net (GoodnetError naming the unsupported layer), load onnxruntime and start the workers. */
  static async create(net: tfl.LayersModel, options: OrtTrainerOptions = {}): Promise<OrtTrainer> {
    const obstacle = ortTrainObstacle(net);
    if (obstacle) throw new GoodnetError(`cannot train with --train-engine ort: ${obstacle}; use --train-engine tfjs`);
    const count = (v: number | undefined, what: string) => {
      const t = v === undefined ? 1 : v === 0 ? availableParallelism() : v;
      if (!Number.isInteger(t) || t < 1) throw new GoodnetError(`${what} must be a positive integer (0: the core count), got ${v}`);
      return t;
    };
    const threads = count(options.threads, 'ort training threads');
    const intraOp = count(options.intraOpThreads, 'onnxruntime intra-op threads');
    const ort = await import('onnxruntime-node');
    const graph = options.graph?.nchwcBlock === undefined ? { ...options.graph, nchwcBlock: await nchwcBlockSize() } : options.graph;
    return new OrtTrainer(ort, net, threads, intraOp, graph, options.seed ?? 0);
  }

  /** A step's Dropout keep masks for `n` images: 0 or 1 / (1 - rate), per graph.dropouts. */
  private drawMasks(n: number, dropouts: TrainGraph['dropouts']): Float32Array[] {
    this.lastMasks = dropouts.map((d) => {
      const m = new Float32Array(n * d.dims.reduce((p, q) => p * q, 1));
      const keep = Math.fround(1 / (1 - d.rate));
      for (let i = 0; i < m.length; i++) m[i] = this.dropRng() >= d.rate ? keep : 0;
      return m;
    });
    return this.lastMasks;
  }

  /**
   * The inputs of a session run of `graph` on `rows` images: the first `rows` of the NHWC
   * images `x` and one-hot labels `y`, the weights from `values`, and each Dropout layer's mask
   * (its first `rows` images).
   */
  private feedsFor(graph: TrainGraph, x: Float32Array, y: Float32Array, rows: number, values: Float32Array[], masks: Float32Array[]): Record<string, import('onnxruntime-node').Tensor> {
    const [H, W, C] = this.net.inputs[0]!.shape.slice(1) as [number, number, number];
    const K = this.net.outputs[0]!.shape[1] as number;
    const T = this.ort.Tensor;
    const f32 = (a: Float32Array, dims: number[]) => new T('float32', a as Float32Array<ArrayBuffer>, dims);
    const rowsOf = (a: Float32Array, per: number) => (a.length === rows * per ? a : a.subarray(0, rows * per));
    const feeds: Record<string, import('onnxruntime-node').Tensor> = { x: f32(rowsOf(x, H * W * C), [rows, H, W, C]), y: f32(rowsOf(y, K), [rows, K]) };
    for (const gi of graph.weightInputs) feeds[gi.name] = f32(values[gi.weight]!, this.shapes[gi.weight]!);
    graph.dropouts.forEach((d, k) => { feeds[d.name] = f32(rowsOf(masks[k]!, d.dims.reduce((p, q) => p * q, 1)), [rows, ...d.dims]); });
    return feeds;
  }

  private sessionOptions(): import('onnxruntime-node').InferenceSession.SessionOptions {
    return { intraOpNumThreads: this.intraOpThreads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
  }

  private async sessionFor(n: number, adam?: TrainGraphOptions['adam'], total?: number): Promise<{ graph: TrainGraph; session: Session; key: string }> {
    const key = adam ? `adam:${n}:${adam.learningRate}:${adam.beta1}:${adam.beta2}:${adam.epsilon}` : total !== undefined ? `shard:${n}/${total}` : String(n);
    let s = this.sessions.get(key);
    if (!s) {
      const graph = buildTrainGraph(this.net, n, { ...this.graphOptions, ...(adam ? { adam } : {}), ...(total !== undefined ? { lossDenominator: total } : {}) });
      let session: Session;
      try {
        session = await this.ort.InferenceSession.create(graph.bytes, this.sessionOptions());
      } catch (e) {
        throw new GoodnetError(`onnxruntime cannot run the training graph (${(e as Error).message.split('\n')[0]}); use --train-engine tfjs`, undefined, { cause: e });
      }
      s = { graph, session };
      this.sessions.set(key, s);
      this.bnStats = graph.bnStats;
    }
    return { ...s, key };
  }

  /**
   * One step on `n` NHWC images `x` (already scaled) with one-hot labels `y` (n x K):
   * loss, correct count and gradients at the net's current weights. The net's BN moving
   * statistics are updated.
   */
  async step(x: Float32Array, y: Float32Array, n: number): Promise<OrtStepResult> {
    const values = this.net.weights.map((v) => v.read().dataSync() as Float32Array);
    const r = await this.stepWith(x, y, n, values);
    for (const s of this.bnStats) {
      for (const wi of [s.movingMean, s.movingVariance]) {
        const v = this.net.weights[wi]!;
        const t = tf.tensor(values[wi]!, v.shape as number[]);
        v.write(t);
        t.dispose();
      }
    }
    return r;
  }

  /**
   * As step, with the weights held by the caller: `values[i]` is net.weights[i]'s value (the
   * BN moving statistics in it are updated in place, as tfjs-layers does); the net is not read
   * or written (see OrtWeights).
   */
  async stepWith(x: Float32Array, y: Float32Array, n: number, values: Float32Array[]): Promise<OrtStepResult> {
    return this.run(x, y, n, values);
  }

  /**
   * One step with Adam applied inside the graph (TrainGraphOptions.adam): `held`'s weights,
   * moments and BN moving statistics are updated in place, as stepWith + held.adam(grads)
   * would (the same float32 operations); the result has no gradients.
   */
  async stepAdam(x: Float32Array, y: Float32Array, n: number, held: OrtWeights): Promise<OrtStepResult> {
    return this.run(x, y, n, held.values, held);
  }

  private async run(x: Float32Array, y: Float32Array, n: number, values: Float32Array[], held?: OrtWeights): Promise<OrtStepResult> {
    if (this.released) throw new Error('OrtTrainer used after dispose()');
    if (this.threads > 1 && n > 1) {
      const r = await this.runShards(x, y, n, values);
      if (held) {
        held.adamShards(r.shards); // as the graph's Adam would, on the gradients summed in shard order
        return { grads: [], lossSum: r.lossSum, correct: r.correct };
      }
      const flat = sumInOrder(r.shards);
      const grads: Float32Array[] = [];
      let off = 0;
      for (const size of this.trainableSizes) {
        grads.push(flat.subarray(off, off + size));
        off += size;
      }
      return { grads, lossSum: r.lossSum, correct: r.correct };
    }
    const adam = held && { learningRate: held.learningRate, beta1: held.beta1, beta2: held.beta2, epsilon: held.epsilon };
    const { graph, session } = await this.sessionFor(n, adam);
    const K = y.length / n;
    const T = this.ort.Tensor;
    const f32 = (a: Float32Array, dims: number[]) => new T('float32', a as unknown as Float32Array<ArrayBuffer>, dims);
    const feeds = this.feedsFor(graph, x, y, n, values, this.drawMasks(n, graph.dropouts));
    if (held) {
      const [a1, a2] = held.biasCorrections();
      feeds.wflat = f32(held.flatW, [graph.flatSize]);
      feeds.mflat = f32(held.flatM, [graph.flatSize]);
      feeds.vflat = f32(held.flatV, [graph.flatSize]);
      feeds.adam_a1 = f32(Float32Array.of(a1), [1]);
      feeds.adam_a2 = f32(Float32Array.of(a2), [1]);
    }
    const out = await session.run(feeds);
    try {
      const loss = (out.loss!.data as Float32Array)[0]!;
      const pred = out.pred!.data as BigInt64Array;
      let correct = 0;
      for (let i = 0; i < n; i++) if (y[i * K + Number(pred[i])] === 1) correct++; // the argmax is the label's one-hot 1
      const grads = graph.gradOutputs.map((g) => Float32Array.from(out[g]!.data as Float32Array));
      if (held) {
        held.flatW.set(out.w_next!.data as Float32Array);
        held.flatM.set(out.m_next!.data as Float32Array);
        held.flatV.set(out.v_next!.data as Float32Array);
        held.advance();
      }
      moveBnStats(graph.bnStats, values, [{ stat: (name) => out[name]!.data as Float32Array, share: 1 }]);
      return { grads, lossSum: loss * n, correct };
    } finally {
      for (const t of Object.values(out)) t.dispose();
    }
  }

  /**
   * A step in min(threads, n) contiguous shards (see OrtTrainerOptions.threads): shard 0 here,
   * the others in the workers at the same time. Returns each shard's gradients as one flat
   * vector (net.trainableWeights order; the caller sums them in shard order); `values`' BN
   * moving statistics get the shards' updates averaged by shard size.
   */
  private async runShards(x: Float32Array, y: Float32Array, n: number, values: Float32Array[]): Promise<{ shards: Float32Array[]; lossSum: number; correct: number }> {
    const parts = Math.min(this.threads, n);
    const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * n) / parts));
    const K = y.length / n;
    const [H, W, C] = this.net.inputs[0]!.shape.slice(1) as [number, number, number];
    const px = H * W * C;
    // Set up sessions (the first step of a shard size) only when missing: with all of them in
    // place, everything up to this thread's own session run is synchronous, so the workers are
    // running by the time a caller regains control (train() prepares the next batch then).
    const cached = (m: number) => { const key = `shard:${m}/${n}`; const c = this.sessions.get(key); return c && { ...c, key }; };
    const own = cached(bounds[1]!) ?? await this.sessionFor(bounds[1]!, undefined, n);
    const layout = this.outputLayout(own.graph);
    const dropouts = own.graph.dropouts;
    const perImage = dropouts.map((d) => d.dims.reduce((p, q) => p * q, 1));
    const masks = this.drawMasks(n, dropouts); // the whole batch's, cut into the shards' rows
    const pool = this.poolFor(Math.ceil(n / parts), px, K, layout.size, perImage.reduce((p, q) => p + q, 0)); // the largest shard
    // The current weights into shared memory (read by every worker's session).
    values.forEach((v, i) => pool.weights.set(v, pool.offsets[i]!));
    for (let j = 0; j < parts - 1; j++) {
      const w = pool.workers[j]!;
      const a = bounds[j + 1]!, b = bounds[j + 2]!;
      const { graph, key } = cached(b - a) ?? await this.sessionFor(b - a, undefined, n);
      const index = w.has(key) ?? await w.session(key, () => ({
        bytes: graph.bytes, options: this.sessionOptions(), n: b - a, shape: [H, W, C], classes: K,
        weights: graph.weightInputs.map((gi) => ({ name: gi.name, offset: pool.offsets[gi.weight]!, dims: this.shapes[gi.weight]! })),
        extras: dropouts.map((d, k) => ({ name: d.name, offset: (b - a) * perImage.slice(0, k).reduce((p, q) => p + q, 0), dims: [b - a, ...d.dims] })),
        outputs: layout.list,
      }));
      w.x.set(x.subarray(a * px, b * px));
      w.y.set(y.subarray(a * K, b * K));
      let off = 0;
      masks.forEach((m, k) => { w.extra.set(m.subarray(a * perImage[k]!, b * perImage[k]!), off); off += (b - a) * perImage[k]!; });
      w.start(index);
    }
    const out = await own.session.run(this.feedsFor(own.graph, x, y, bounds[1]!, values, masks));
    try {
      // Shard 0's outputs in the workers' layout, then every shard's read from it.
      if (!this.mine || this.mine.length < layout.size + bounds[1]!) this.mine = new Float32Array(layout.size + Math.ceil(n / parts));
      const mine = this.mine; // reused: the caller copies the gradients out (Adam's slots, or their sum) before the next step
      writeOutputs(out, layout.list, mine);
      for (const w of pool.workers.slice(0, parts - 1)) await w.done();
      const shards = [mine, ...pool.workers.slice(0, parts - 1).map((w) => w.out)];
      let lossSum = 0;
      let correct = 0;
      shards.forEach((o, i) => {
        lossSum += o[layout.loss]! * n;
        for (let r = bounds[i]!; r < bounds[i + 1]!; r++) if (y[r * K + o[layout.pred + r - bounds[i]!]!] === 1) correct++;
      });
      moveBnStats(own.graph.bnStats, values, shards.map((o, i) => ({ stat: (name) => o.subarray(layout.offset.get(name)!), share: (bounds[i + 1]! - bounds[i]!) / n })));
      return { shards: shards.map((o) => o.subarray(0, layout.gradSize)), lossSum, correct };
    } finally {
      for (const t of Object.values(out)) t.dispose();
    }
  }

  /** Where each output of a training graph (no Adam) goes in a shard's output vector: gradients (flat, trainable order), BN statistics, loss, predictions last. */
  private outputLayout(graph: TrainGraph): ReturnType<OrtTrainer['makeLayout']> {
    let l = this.layouts.get(graph);
    if (!l) this.layouts.set(graph, (l = this.makeLayout(graph)));
    return l;
  }

  private makeLayout(graph: TrainGraph): { list: { name: string; offset: number }[]; offset: Map<string, number>; gradSize: number; loss: number; pred: number; size: number } {
    const list: { name: string; offset: number }[] = [];
    let off = 0;
    const add = (name: string, size: number) => { list.push({ name, offset: off }); off += size; };
    this.trainableSizes.forEach((size, k) => add(graph.gradOutputs[k]!, size));
    const gradSize = off;
    for (const st of graph.bnStats) {
      const c = this.shapes[st.movingMean]!.reduce((p, q) => p * q, 1);
      add(st.mean, c);
      add(st.variance, c);
    }
    const loss = off;
    add('loss', 1);
    const pred = off;
    list.push({ name: 'pred', offset: pred });
    return { list, offset: new Map(list.map((o) => [o.name, o.offset])), gradSize, loss, pred, size: off };
  }

  /** The workers and the shared weights, for shards of up to `images` images (made again for bigger shards); `outputs`: the layout's size without predictions. */
  private poolFor(images: number, pixels: number, classes: number, outputs: number, extras: number): { workers: ShardWorker[]; weights: Float32Array; offsets: number[] } {
    if (this.pool && this.pool.images >= images) return this.pool;
    const old = this.pool;
    if (old) void Promise.all(old.workers.map((w) => w.close()));
    const offsets: number[] = [];
    let total = 0;
    for (const shape of this.shapes) { offsets.push(total); total += shape.reduce((p, q) => p * q, 1); }
    const weights = new Float32Array(new SharedArrayBuffer(4 * Math.max(1, total)));
    this.pool = { images, weights, offsets, workers: Array.from({ length: this.threads - 1 }, () => new ShardWorker(weights.buffer as SharedArrayBuffer, images, pixels, classes, outputs + images, extras)) };
    return this.pool;
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const s of this.sessions.values()) await s.session.release();
    this.sessions.clear();
    await Promise.all(this.pool?.workers.map((w) => w.close()) ?? []);
    this.pool = undefined;
  }
}

/**
 * Weights of a net held in Float32Arrays (net.weights order) with Adam on them, as
 * tf.train.adam computes it (float32: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
 * w += -lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), eps 1e-7): the ort engine's
 * training loop without a tfjs round trip per step. `sync()` writes them to the net.
 */
export class OrtWeights {
  readonly values: Float32Array[];
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  private readonly trainable: number[];
  private accB1: number;
  private accB2: number;

  /**
   * The trainable weights (net.trainableWeights order) and Adam's moments, each one flat vector;
   * `values[i]` of a trainable weight is a view into `flatW` (what OrtTrainer.stepAdam feeds).
   */
  readonly flatW: Float32Array;
  readonly flatM: Float32Array;
  readonly flatV: Float32Array;

  /** The vectors in WebAssembly memory with its SIMD Adam step (adamShards, adamFlat), or null (the JS loop). */
  private readonly wasm: WasmAdam | null;

  /**
   * `slots`: how many gradient vectors one adamShards call takes at most (the data-parallel
   * threads); `wasm` false keeps the vectors in plain arrays with the JS loop.
   */
  constructor(readonly net: tfl.LayersModel, readonly learningRate: number, readonly beta1 = 0.9, readonly beta2 = 0.999, readonly epsilon = 1e-7,
    options: { slots?: number; wasm?: boolean } = {}) {
    const trainableW = net.trainableWeights;
    const sizes = trainableW.map((w) => (w.shape as number[]).reduce((p, q) => p * q, 1));
    const total = sizes.reduce((p, q) => p + q, 0);
    this.wasm = options.wasm === false ? null : WasmAdam.create(total, Math.max(1, options.slots ?? 1));
    this.flatW = this.wasm?.w ?? new Float32Array(total);
    this.flatM = this.wasm?.m ?? new Float32Array(total);
    this.flatV = this.wasm?.v ?? new Float32Array(total);
    const views = new Map<unknown, number>();
    let off = 0;
    const offsets = sizes.map((n, k) => { views.set(trainableW[k], off); off += n; return off - n; });
    this.values = net.weights.map((w) => {
      const data = w.read().dataSync() as Float32Array;
      const o = views.get(w);
      if (o === undefined) return Float32Array.from(data);
      const view = this.flatW.subarray(o, o + data.length);
      view.set(data);
      return view;
    });
    // trainable[k]: the index in net.weights of net.trainableWeights[k].
    this.trainable = trainableW.map((w) => net.weights.indexOf(w));
    this.m = offsets.map((o, k) => this.flatM.subarray(o, o + sizes[k]!));
    this.v = offsets.map((o, k) => this.flatV.subarray(o, o + sizes[k]!));
    this.accB1 = Math.fround(beta1);
    this.accB2 = Math.fround(beta2);
  }

  /** Adam's bias corrections of the next step: 1 - beta1^t, 1 - beta2^t (float32). */
  biasCorrections(): [number, number] {
    return [Math.fround(1 - this.accB1), Math.fround(1 - this.accB2)];
  }

  /** Count one Adam step taken elsewhere (OrtTrainer.stepAdam): beta^t advances. */
  advance(): void {
    const f = Math.fround;
    this.accB1 = f(this.accB1 * f(this.beta1));
    this.accB2 = f(this.accB2 * f(this.beta2));
  }

  /** One Adam step; `grads` in net.trainableWeights order. */
  adam(grads: Float32Array[]): void {
    const c = this.constants();
    for (let k = 0; k < this.trainable.length; k++) adamLoop(this.values[this.trainable[k]!]!, grads[k]!, this.m[k]!, this.v[k]!, ...c);
    this.advance();
  }

  /** Adam's float32 constants for the next step: b1, b2, 1 - b1, 1 - b2, -lr, eps and the two bias corrections. */
  private constants(): AdamConstants {
    const f = Math.fround;
    const b1 = f(this.beta1), b2 = f(this.beta2);
    return [b1, b2, f(1 - b1), f(1 - b2), f(-f(this.learningRate)), f(this.epsilon), ...this.biasCorrections()];
  }

  /**
   * One Adam step with the sum of `shards` (each every trainable weight's gradient as one flat
   * vector, flatW's layout), summed in order in float32: the same result as summing them and
   * calling adam() (WebAssembly SIMD when available, else the JS loop).
   */
  adamShards(shards: Float32Array[]): void {
    const c = this.constants();
    const wasm = this.wasm;
    if (wasm && shards.length <= wasm.slots) {
      shards.forEach((g, k) => { if (g !== wasm.grads[k]) wasm.grads[k]!.set(g); });
      wasm.step(shards.length, ...c);
    } else {
      adamLoop(this.flatW, sumInOrder(shards), this.flatM, this.flatV, ...c);
    }
    this.advance();
  }

  /** Write every value (weights and BN statistics) to the net. */
  sync(): void {
    this.net.weights.forEach((w, i) => {
      const t = tf.tensor(this.values[i]!, w.shape as number[]);
      w.write(t);
      t.dispose();
    });
  }
}

type AdamConstants = [b1: number, b2: number, c1: number, c2: number, negLr: number, eps: number, oneMinusAcc1: number, oneMinusAcc2: number];

/** The element-wise float32 sum of `shards`, added in order (a new array). */
function sumInOrder(shards: Float32Array[]): Float32Array {
  const g = Float32Array.from(shards[0]!);
  for (const s of shards.slice(1)) for (let j = 0; j < g.length; j++) g[j] = g[j]! + s[j]!;
  return g;
}

/** A BN moving statistic after one training step: moving - (moving - batch) * (1 - momentum), float32 as tfjs-layers. */
function movedTowards(moving: number, batch: number, decay: number): number {
  return moving - Math.fround(Math.fround(moving - batch) * decay);
}

/**
 * The BN moving statistics in `values` after a step: each of the step's shards moves them
 * towards its batch statistics as tfjs-layers' BatchNormalization does, and the results are
 * averaged by the shards' shares of the batch (one shard, share 1: its update itself).
 */
function moveBnStats(bnStats: TrainGraph['bnStats'], values: Float32Array[], shards: { stat: (name: string) => Float32Array; share: number }[]): void {
  for (const st of bnStats) {
    const decay = Math.fround(1 - st.momentum);
    for (const [wi, name] of [[st.movingMean, st.mean], [st.movingVariance, st.variance]] as const) {
      const cur = values[wi]!;
      const avg = new Float64Array(cur.length);
      for (const sh of shards) {
        const batch = sh.stat(name);
        for (let c = 0; c < cur.length; c++) avg[c] += movedTowards(cur[c]!, batch[c]!, decay) * sh.share;
      }
      cur.set(avg);
    }
  }
}

/**
 * Adam on one weight in float32 arithmetic (every operation rounded, as tf.train.adam): a
 * plain function with only typed arrays and numbers, so V8 keeps one monomorphic loop
 * (VGG's 218,586 weights: 1.4-1.9 ms per step, 2.0 ms with the loop inside a forEach closure).
 */
function adamLoop(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, b1: number, b2: number, c1: number, c2: number,
  negLr: number, eps: number, oneMinusAcc1: number, oneMinusAcc2: number): void {
  const f = Math.fround;
  const n = w.length;
  for (let j = 0; j < n; j++) {
    const gj = g[j]!;
    const mj = f(f(m[j]! * b1) + f(gj * c1));
    const vj = f(f(v[j]! * b2) + f(f(gj * gj) * c2));
    m[j] = mj;
    v[j] = vj;
    const mh = f(mj / oneMinusAcc1), vh = f(vj / oneMinusAcc2);
    w[j] = f(f(f(mh / f(f(Math.sqrt(vh)) + eps)) * negLr) + w[j]!);
  }
}

let blockProbe: Promise<number> | undefined;

/**
 * The channel block of onnxruntime's NCHWc convolution kernels on this CPU (16 with AVX-512,
 * 8 with AVX2), or 0 when it has none: asked of onnxruntime itself, once, by optimising a
 * one-Conv graph with constant weights and reading the reordered filter's (padded) size.
 */
export function nchwcBlockSize(): Promise<number> {
  blockProbe ??= probeNchwcBlock();
  return blockProbe;
}

async function probeNchwcBlock(): Promise<number> {
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'goodnet-nchwc-'));
    const ort = await import('onnxruntime-node');
    const dims = (d: number[]) => ({ dim: d.map((v) => ({ dimValue: v })) });
    const model: ModelProto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'probe',
        node: [{ opType: 'Conv', name: 'conv', input: ['x', 'w'], output: ['y'], attribute: [{ name: 'kernel_shape', type: AT.INTS, ints: [3, 3] }] }],
        initializer: [floatTensor('w', [8, 1, 3, 3], new Float32Array(72).fill(1))],
        input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: dims([1, 1, 8, 8]) } } }],
        output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: dims([1, 8, 6, 6]) } } }],
      },
    };
    const file = join(dir, 'probe.onnx');
    const session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'all', optimizedModelFilePath: file, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await session.release();
    const m = decodeModel(readFileSync(file), file);
    const conv = (m.graph?.node ?? []).find((n) => n.domain === 'com.microsoft.nchwc' && n.opType === 'Conv');
    const w = conv && (m.graph?.initializer ?? []).find((t) => t.name === conv.input?.[1]);
    const block = w?.dims?.[0] === undefined ? 0 : num(w.dims[0]);
    return block >= 8 && block % 8 === 0 ? block : 0;
  } catch {
    return 0; // no NCHWc kernels (or no way to ask, e.g. no writable temp folder): plain convolutions
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
