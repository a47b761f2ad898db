/**
 * The ort training engine: forward + backward of a tfjs-layers classifier in one
 * onnxruntime-node session run (the graph of ort_train_graph.ts), one session per batch
 * size. A step reads the net's current weights, returns the loss, the correct count and
 * every trainable weight's gradient, and folds the batch statistics into the net's
 * BatchNormalization moving averages as tfjs-layers does in training mode. The optimizer
 * step stays with the caller (models/train.ts applies the gradients with the same tfjs
 * optimizer as the tfjs engine). onnxruntime-node is imported only when a trainer is created.
 */
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
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
  private readonly sessions = new Map<number, { graph: TrainGraph; session: Session }>();
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
    return new OrtTrainer(ort, net, threads, options.graph ?? {});
  }

  private async sessionFor(n: number): Promise<{ graph: TrainGraph; session: Session }> {
    let s = this.sessions.get(n);
    if (!s) {
      const graph = buildTrainGraph(this.net, n, this.graphOptions);
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
      this.sessions.set(n, s);
    }
    return s;
  }

  /**
   * One step on `n` NHWC images `x` (already scaled) with one-hot labels `y` (n x K):
   * loss, correct count and gradients at the net's current weights. The net's BN moving
   * statistics are updated.
   */
  async step(x: Float32Array, y: Float32Array, n: number): Promise<OrtStepResult> {
    if (this.released) throw new Error('OrtTrainer used after dispose()');
    const { graph, session } = await this.sessionFor(n);
    const [H, W, C] = this.net.inputs[0]!.shape.slice(1) as [number, number, number];
    const K = y.length / n;
    const all = this.net.weights;
    const T = this.ort.Tensor;
    const f32 = (a: Float32Array, dims: number[]) => new T('float32', a as unknown as Float32Array<ArrayBuffer>, dims);
    const feeds: Record<string, import('onnxruntime-node').Tensor> = {
      x: f32(x.length === n * H * W * C ? x : x.subarray(0, n * H * W * C), [n, H, W, C]),
      y: f32(y, [n, K]),
    };
    for (const w of graph.weightInputs) {
      const v = all[w.weight]!;
      feeds[w.name] = f32(v.read().dataSync() as Float32Array, v.shape as number[]);
    }
    const out = await session.run(feeds);
    try {
      const loss = (out.loss!.data as Float32Array)[0]!;
      const pred = out.pred!.data as BigInt64Array;
      let correct = 0;
      for (let i = 0; i < n; i++) {
        const label = Number(pred[i]);
        if (y[i * K + label] === 1) {
          // argmax of a one-hot row is its 1
          correct++;
        }
      }
      const grads = graph.gradOutputs.map((g) => Float32Array.from(out[g]!.data as Float32Array));
      for (const s of graph.bnStats) {
        // moving <- moving - (moving - batch) * (1 - momentum), as tfjs-layers' BatchNormalization
        for (const [wi, name] of [[s.movingMean, s.mean], [s.movingVariance, s.variance]] as const) {
          const v = all[wi]!;
          const batch = out[name]!.data as Float32Array;
          const next = tf.tidy(() => {
            const cur = v.read();
            return tf.sub(cur, tf.mul(tf.sub(cur, tf.tensor(batch, cur.shape)), 1 - s.momentum));
          });
          v.write(next);
          next.dispose();
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
