/**
 * Data-parallel training steps over worker_threads: one tfjs-wasm engine per thread, each
 * batch split into contiguous shards (shard 0 in this thread, shard i in worker i), the
 * shards' gradients summed in shard order, so a step is deterministic for a seed and a
 * thread count. Every step starts from this thread's weights (sent to the workers), so
 * whatever changes them between steps (the optimizer, a pruning mask re-applied after a
 * step) is what every shard sees.
 *
 * The loss is the one tfjs-layers' trainOnBatch minimises (categorical cross-entropy of
 * the softmax output, probabilities normalised and clipped to [1e-7, 1 - 1e-7], mean over
 * the batch): shard i contributes sum(its losses) / batch, so the summed gradient is the
 * full batch's up to float summation order. BatchNormalization normalises each shard with
 * its own batch statistics (as PyTorch's DistributedDataParallel without SyncBatchNorm);
 * the moving mean and variance are the shards' updated values averaged by shard size.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

const EPS = 1e-7; // tfjs-layers' epsilon()

/** Sum over the batch of categorical cross-entropy, as tfjs-layers computes it per image. */
export function crossEntropySum(y: tf.Tensor, p: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const q = tf.clipByValue(tf.div(p, tf.sum(p, -1, true)), EPS, 1 - EPS);
    return tf.neg(tf.sum(tf.mul(y, tf.log(q)))) as tf.Scalar;
  });
}

/** The moving-statistics weights of BatchNormalization layers (averaged over shards), as indices into net.weights. */
function movingStatIndices(net: tfl.LayersModel): number[] {
  const out: number[] = [];
  net.weights.forEach((w, i) => {
    if (!w.trainable && /moving_(mean|variance)/.test(w.originalName ?? w.name)) out.push(i);
  });
  return out;
}

/** Whether a layer adds losses or randomness that a shard cannot reproduce (regularizers, dropout, noise). */
export function dataParallelObstacle(net: tfl.LayersModel): string | undefined {
  for (const l of net.layers) {
    const cls = l.getClassName();
    if (/Dropout|Noise/.test(cls)) return `layer '${l.name}' (${cls}) draws random numbers`;
    const cfg = l.getConfig() as Record<string, unknown>;
    for (const k of ['kernelRegularizer', 'biasRegularizer', 'activityRegularizer', 'depthwiseRegularizer', 'betaRegularizer', 'gammaRegularizer']) {
      if (cfg[k] != null) return `layer '${l.name}' has a ${k}`;
    }
  }
  return undefined;
}

export interface ShardStep {
  /** Summed gradients, in the order of net.trainableWeights (the caller disposes them). */
  grads: tf.Tensor[];
  /** Sum of the batch's per-image losses. */
  lossSum: number;
  /** Images whose argmax equals the label. */
  correct: number;
}

interface WorkerReply { grads: Float32Array; lossSum: number; correct: number; stats: Float32Array; error?: string }

/** Data-parallel gradient computation for one model; `threads` - 1 workers plus this thread. */
export class DataParallel {
  private readonly pending = new Map<Worker, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
  private closed = false;
  private readonly stats: number[];

  private constructor(
    private readonly net: tfl.LayersModel,
    private readonly workers: Worker[],
    readonly threads: number,
  ) {
    this.stats = movingStatIndices(net);
    for (const w of workers) {
      w.on('message', (m: WorkerReply) => {
        const p = this.pending.get(w);
        this.pending.delete(w);
        if (m.error) p?.reject(new Error(`training worker: ${m.error}`));
        else p?.resolve(m);
      });
      w.on('error', (e) => { const p = this.pending.get(w); this.pending.delete(w); p?.reject(e); });
      w.on('exit', (code) => {
        const p = this.pending.get(w);
        this.pending.delete(w);
        p?.reject(new Error(`training worker exited with code ${code}`));
      });
    }
  }

  /**
   * Start `threads` - 1 workers, each building `net` from its topology. `threads` 0 means
   * the core count. Throws GoodnetError when the net cannot be trained in shards.
   */
  static async create(net: tfl.LayersModel, threads = 0): Promise<DataParallel> {
    const t = threads === 0 ? availableParallelism() : threads;
    if (!Number.isInteger(t) || t < 1) throw new GoodnetError(`threads must be a positive integer, got ${threads}`);
    const obstacle = dataParallelObstacle(net);
    if (obstacle && t > 1) throw new GoodnetError(`cannot train in ${t} threads: ${obstacle}; use 1 thread`);
    const topology = JSON.stringify(net.toJSON(null, false));
    const execArgv: string[] = []; // no inherited node flags (see fastsweep's workers)
    const workers = Array.from({ length: t - 1 }, () =>
      new Worker(new URL('./train_worker.js', import.meta.url), { workerData: { topology }, execArgv }));
    const dp = new DataParallel(net, workers, t);
    try {
      await Promise.all(workers.map((w) => dp.call(w, { kind: 'ready' }, [])));
    } catch (e) {
      await dp.close();
      throw e;
    }
    return dp;
  }

  private call(w: Worker, msg: unknown, transfer: ArrayBuffer[]): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      this.pending.set(w, { resolve, reject });
      w.postMessage(msg, transfer);
    });
  }

  /**
   * Gradients of the mean loss over the batch `x` (n NHWC images, already scaled) with
   * one-hot labels `y`, computed in shards; BN moving statistics of the net are updated.
   */
  async step(x: Float32Array, y: Float32Array, n: number, shape: readonly [number, number, number]): Promise<ShardStep> {
    if (this.closed) throw new Error('DataParallel used after close()');
    const per = shape[0] * shape[1] * shape[2];
    const k = y.length / n;
    const parts = Math.min(this.threads, n);
    const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * n) / parts));
    // Current weights, flat, for the workers.
    let weights: Float32Array | undefined;
    if (parts > 1) {
      const vals = this.net.weights.map((w) => w.read().dataSync() as Float32Array);
      weights = new Float32Array(vals.reduce((a, v) => a + v.length, 0));
      let o = 0;
      for (const v of vals) { weights.set(v, o); o += v.length; }
    }
    const replies = Array.from({ length: parts - 1 }, (_, j) => {
      const i = j + 1;
      const xs = x.slice(bounds[i]! * per, bounds[i + 1]! * per);
      const ys = y.slice(bounds[i]! * k, bounds[i + 1]! * k);
      const w = weights!.slice();
      return this.call(this.workers[j]!, { kind: 'step', weights: w, x: xs, y: ys, n: bounds[i + 1]! - bounds[i]!, total: n, shape },
        [xs.buffer, ys.buffer, w.buffer]);
    });
    // Shard 0 here, while the workers run theirs.
    const m = bounds[1]!;
    const own = shardGradients(this.net, x.subarray(0, m * per), y.subarray(0, m * k), m, n, shape);
    let done: WorkerReply[];
    try {
      done = await Promise.all(replies);
    } catch (e) {
      tf.dispose(own.grads);
      throw e;
    }
    const vars = this.net.trainableWeights;
    const grads = own.grads.map((g, vi) => {
      if (done.length === 0) return g;
      return tf.tidy(() => {
        let s: tf.Tensor = g;
        let off = 0;
        for (let v = 0; v < vi; v++) off += vars[v]!.shape.reduce<number>((a, b) => a * b!, 1);
        const size = g.size;
        for (const r of done) s = tf.add(s, tf.tensor(r.grads.subarray(off, off + size), g.shape));
        g.dispose();
        return s;
      });
    });
    // BN moving statistics: shard-size weighted mean of every shard's update.
    if (this.stats.length > 0 && done.length > 0) {
      const all = this.net.weights;
      let o = 0;
      for (const wi of this.stats) {
        const lw = all[wi]!;
        const cur = lw.read().dataSync() as Float32Array;
        const avg = new Float32Array(cur.length);
        for (let c = 0; c < cur.length; c++) avg[c] = (cur[c]! * m) / n;
        done.forEach((r, j) => {
          const b = bounds[j + 2]! - bounds[j + 1]!;
          for (let c = 0; c < cur.length; c++) avg[c] += (r.stats[o + c]! * b) / n;
        });
        o += cur.length;
        const t = tf.tensor(avg, lw.shape as number[]);
        lw.write(t);
        t.dispose();
      }
    }
    return { grads, lossSum: own.lossSum + done.reduce((a, r) => a + r.lossSum, 0), correct: own.correct + done.reduce((a, r) => a + r.correct, 0) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Gradients (trainable weights' order) of sum(losses of these m images) / total, with the
 * net in training mode; also the loss sum and the count of correct argmaxes.
 */
export function shardGradients(net: tfl.LayersModel, x: Float32Array, y: Float32Array, m: number, total: number,
  shape: readonly [number, number, number]): ShardStep {
  const vars = net.trainableWeights.map((w) => w.read() as tf.Variable);
  const k = y.length / m;
  let lossSum = 0;
  let correct = 0;
  const grads = tf.tidy(() => {
    const xt = tf.tensor4d(x, [m, ...shape]);
    const yt = tf.tensor2d(y, [m, k]);
    let pred: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const p = (net.apply(xt, { training: true }) as tf.Tensor);
      pred = tf.keep(tf.argMax(p, -1));
      return tf.div(crossEntropySum(yt, p), total) as tf.Scalar;
    }, vars);
    lossSum = value.dataSync()[0]! * total;
    const pl = pred!.dataSync();
    const yl = tf.argMax(yt, -1).dataSync();
    for (let i = 0; i < m; i++) if (pl[i] === yl[i]) correct++;
    pred!.dispose();
    return vars.map((v) => grads[v.name]!);
  });
  return { grads, lossSum, correct };
}
