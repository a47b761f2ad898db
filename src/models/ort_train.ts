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
import { GoodnetError } from '../errors.js';
import { decodeModel, encodeModel, floatTensor, num, AT, type ModelProto } from '../io/onnx_proto.js';
import { buildTrainGraph, ortTrainObstacle, type TrainGraph, type TrainGraphOptions } from './ort_train_graph.js';

type Ort = typeof import('onnxruntime-node');
type Session = import('onnxruntime-node').InferenceSession;

/** Training engines of `train()` / `--train-engine`. */
export type TrainEngineName = 'tfjs' | 'ort';
export const TRAIN_ENGINES: readonly TrainEngineName[] = ['tfjs', 'ort'];
export const DEFAULT_TRAIN_ENGINE: TrainEngineName = 'tfjs';

export interface OrtTrainerOptions {
  /** onnxruntime intra-op threads (default 1; 0: the core count). */
  threads?: number;
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
  /** Sessions by batch size ('<n>'), and with Adam in the graph ('adam:<n>'). */
  private readonly sessions = new Map<string, { graph: TrainGraph; session: Session }>();
  private released = false;

  private constructor(
    private readonly ort: Ort,
    readonly net: tfl.LayersModel,
    readonly threads: number,
    private readonly graphOptions: TrainGraphOptions,
  ) {}

  /** Check the net (GoodnetError naming the unsupported layer) and load onnxruntime. */
  static async create(net: tfl.LayersModel, options: OrtTrainerOptions = {}): Promise<OrtTrainer> {
    const obstacle = ortTrainObstacle(net);
    if (obstacle) throw new GoodnetError(`cannot train with --train-engine ort: ${obstacle}; use --train-engine tfjs`);
    const threads = options.threads === undefined ? 1 : options.threads === 0 ? availableParallelism() : options.threads;
    if (!Number.isInteger(threads) || threads < 1) throw new GoodnetError(`ort threads must be a positive integer, got ${options.threads}`);
    const ort = await import('onnxruntime-node');
    const graph = options.graph?.nchwcBlock === undefined ? { ...options.graph, nchwcBlock: await nchwcBlockSize() } : options.graph;
    return new OrtTrainer(ort, net, threads, graph);
  }

  private async sessionFor(n: number, adam?: TrainGraphOptions['adam']): Promise<{ graph: TrainGraph; session: Session }> {
    const key = adam ? `adam:${n}:${adam.learningRate}:${adam.beta1}:${adam.beta2}:${adam.epsilon}` : String(n);
    let s = this.sessions.get(key);
    if (!s) {
      const graph = buildTrainGraph(this.net, n, adam ? { ...this.graphOptions, adam } : this.graphOptions);
      let session: Session;
      try {
        session = await this.ort.InferenceSession.create(graph.bytes, {
          intraOpNumThreads: this.threads,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        });
      } catch (e) {
        throw new GoodnetError(`onnxruntime cannot run the training graph (${(e as Error).message.split('\n')[0]}); use --train-engine tfjs`, undefined, { cause: e });
      }
      s = { graph, session };
      this.sessions.set(key, s);
    }
    return s;
  }

  /**
   * One step on `n` NHWC images `x` (already scaled) with one-hot labels `y` (n x K):
   * loss, correct count and gradients at the net's current weights. The net's BN moving
   * statistics are updated.
   */
  async step(x: Float32Array, y: Float32Array, n: number): Promise<OrtStepResult> {
    const values = this.net.weights.map((v) => v.read().dataSync() as Float32Array);
    const r = await this.stepWith(x, y, n, values);
    const { graph } = this.sessions.get(String(n))!;
    for (const s of graph.bnStats) {
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
    const adam = held && { learningRate: held.learningRate, beta1: held.beta1, beta2: held.beta2, epsilon: held.epsilon };
    const { graph, session } = await this.sessionFor(n, adam);
    const [H, W, C] = this.net.inputs[0]!.shape.slice(1) as [number, number, number];
    const K = y.length / n;
    const all = this.net.weights;
    const T = this.ort.Tensor;
    const f32 = (a: Float32Array, dims: number[]) => new T('float32', a as unknown as Float32Array<ArrayBuffer>, dims);
    const feeds: Record<string, import('onnxruntime-node').Tensor> = {
      x: f32(x.length === n * H * W * C ? x : x.subarray(0, n * H * W * C), [n, H, W, C]),
      y: f32(y, [n, K]),
    };
    for (const w of graph.weightInputs) feeds[w.name] = f32(values[w.weight]!, all[w.weight]!.shape as number[]);
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
      for (const s of graph.bnStats) {
        // moving <- moving - (moving - batch) * (1 - momentum), as tfjs-layers' BatchNormalization
        const decay = Math.fround(1 - s.momentum);
        for (const [wi, name] of [[s.movingMean, s.mean], [s.movingVariance, s.variance]] as const) {
          const cur = values[wi]!;
          const batch = out[name]!.data as Float32Array;
          for (let c = 0; c < cur.length; c++) cur[c] = cur[c]! - Math.fround(Math.fround(cur[c]! - batch[c]!) * decay);
        }
      }
      return { grads, lossSum: loss * n, correct };
    } finally {
      for (const t of Object.values(out)) t.dispose();
    }
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const s of this.sessions.values()) await s.session.release();
    this.sessions.clear();
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

  constructor(readonly net: tfl.LayersModel, readonly learningRate: number, readonly beta1 = 0.9, readonly beta2 = 0.999, readonly epsilon = 1e-7) {
    const trainableW = net.trainableWeights;
    const sizes = trainableW.map((w) => (w.shape as number[]).reduce((p, q) => p * q, 1));
    const total = sizes.reduce((p, q) => p + q, 0);
    this.flatW = new Float32Array(total);
    this.flatM = new Float32Array(total);
    this.flatV = new Float32Array(total);
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
    const f = Math.fround;
    const b1 = f(this.beta1), b2 = f(this.beta2), lr = f(this.learningRate), eps = f(this.epsilon);
    const c1 = f(1 - b1), c2 = f(1 - b2), negLr = f(-lr);
    const [oneMinusAcc1, oneMinusAcc2] = this.biasCorrections();
    for (let k = 0; k < this.trainable.length; k++) {
      adamLoop(this.values[this.trainable[k]!]!, grads[k]!, this.m[k]!, this.v[k]!, b1, b2, c1, c2, negLr, eps, oneMinusAcc1, oneMinusAcc2);
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
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-nchwc-'));
  try {
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
    return 0; // no NCHWc kernels (or no way to ask): plain convolutions
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
