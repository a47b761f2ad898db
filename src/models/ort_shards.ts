/**
 * The main thread's side of the ort training engine's data-parallel workers
 * (models/ort_train_worker.ts): shared buffers for one worker's shard (images, labels,
 * outputs) and the net's weights (shared by all workers), sessions set up once per shard
 * size, and a step as a bump of a shared control word.
 */
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { GoodnetError } from '../errors.js';
import type { InferenceSession } from 'onnxruntime-node';

/** Control words (Int32Array on a SharedArrayBuffer). */
export const CTRL = {
  /** Bumped by the main thread per request. */
  REQUEST: 0,
  /** Set to the request's number when it is done. */
  DONE: 1,
  /** What the request is: a session index (>= 0), SETUP or STOP. */
  COMMAND: 2,
  /** 0, or 1 when the request failed (its message follows on the port). */
  FAILED: 3,
  SIZE: 4,
} as const;
export const SETUP = -1;
export const STOP = -2;

export interface WorkerInit {
  ctrl: SharedArrayBuffer;
  /** Every weight of the net, flat (net.weights order): written by the main thread between steps. */
  weights: SharedArrayBuffer;
  /** This worker's shard: images (NHWC), one-hot labels. */
  x: SharedArrayBuffer;
  y: SharedArrayBuffer;
  /** This worker's shard of the per-image extra inputs (Dropout masks), laid out per session (SessionSetup.extras). */
  extra: SharedArrayBuffer;
  /** This worker's outputs, laid out per session (SessionSetup.outputs). */
  out: SharedArrayBuffer;
  port: MessagePort;
}

export interface SessionSetup {
  index: number;
  bytes: Uint8Array;
  options: InferenceSession.SessionOptions;
  /** Images in the shard, and the image shape (H, W, C) and class count. */
  n: number;
  shape: [number, number, number];
  classes: number;
  /** Graph inputs read from the shared weights: name, offset and dims. */
  weights: { name: string; offset: number; dims: number[] }[];
  /** Graph inputs read from the shared extra inputs (WorkerInit.extra): name, offset and dims. */
  extras: { name: string; offset: number; dims: number[] }[];
  /** Graph outputs copied to `out` (float32; int64 outputs converted): name and offset. */
  outputs: { name: string; offset: number }[];
}

/** Session outputs copied into `dest` at the offsets of `list` (float32; int64 outputs such as the argmax converted). */
export function writeOutputs(outputs: Record<string, { data: unknown }>, list: { name: string; offset: number }[], dest: Float32Array): void {
  for (const o of list) {
    const d = outputs[o.name]!.data as Float32Array | BigInt64Array;
    if (d instanceof BigInt64Array) for (let i = 0; i < d.length; i++) dest[o.offset + i] = Number(d[i]);
    else dest.set(d, o.offset);
  }
}

/**
 * The next message on `port`, read synchronously: it was posted before the control word that
 * announced it, so it is there, but give its delivery up to a second before saying none.
 */
export function receiveSoon(port: MessagePort): unknown {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 1000; i++) {
    const m = receiveMessageOnPort(port);
    if (m) return m.message;
    Atomics.wait(nap, 0, 0, 1);
  }
  return undefined;
}

/** Atomics.waitAsync (Node >= 16; not in TypeScript's ES2022 library). */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

export class ShardWorker {
  readonly x: Float32Array;
  readonly y: Float32Array;
  readonly extra: Float32Array;
  readonly out: Float32Array;
  private readonly ctrl: Int32Array;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly sessions = new Map<string, number>();
  private request = 0;
  private failure: Error | undefined;
  private readonly exited: Promise<void>;

  /** A worker for shards of up to `images` images of `pixels` values, `classes` classes and `extras` extra input values each, with `outputs` output values. */
  constructor(weights: SharedArrayBuffer, images: number, pixels: number, classes: number, outputs: number, extras = 0) {
    const sab = (floats: number) => new SharedArrayBuffer(4 * Math.max(1, floats));
    const init: Omit<WorkerInit, 'port'> = { ctrl: new SharedArrayBuffer(4 * CTRL.SIZE), weights, x: sab(images * pixels), y: sab(images * classes), extra: sab(images * extras), out: sab(outputs) };
    this.ctrl = new Int32Array(init.ctrl);
    this.x = new Float32Array(init.x);
    this.y = new Float32Array(init.y);
    this.extra = new Float32Array(init.extra);
    this.out = new Float32Array(init.out);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(new URL('./ort_train_worker.js', import.meta.url), { workerData: { ...init, port: port2 }, transferList: [port2], execArgv: [] });
    this.worker.unref();
    this.exited = new Promise((resolve) => {
      const fail = (e: Error) => { this.failure ??= e; resolve(); };
      this.worker.on('error', fail);
      this.worker.on('exit', (code) => fail(new Error(`ort training worker exited with code ${code}`)));
    });
  }

  private send(command: number): void {
    if (this.failure) throw this.failure;
    Atomics.store(this.ctrl, CTRL.COMMAND, command);
    this.request = Atomics.add(this.ctrl, CTRL.REQUEST, 1) + 1;
    Atomics.notify(this.ctrl, CTRL.REQUEST);
  }

  /** Wait for the last request; throws what the worker reported when it failed. */
  async done(): Promise<void> {
    // A pending Atomics.waitAsync does not keep Node's event loop alive; the worker does while referenced.
    this.worker.ref();
    try {
      for (;;) {
        const d = Atomics.load(this.ctrl, CTRL.DONE);
        if (d === this.request) break;
        if (this.failure) throw this.failure;
        const w = waitAsync(this.ctrl, CTRL.DONE, d);
        if (w.async) await Promise.race([w.value, this.exited]);
      }
    } finally {
      this.worker.unref();
    }
    if (Atomics.load(this.ctrl, CTRL.FAILED)) {
      const m = receiveSoon(this.port) as string | undefined;
      throw new GoodnetError(`onnxruntime cannot run the training graph in a worker thread (${m ?? 'unknown error'}); use --threads 1`);
    }
  }

  /** The index of the session of `key` if the worker has it. */
  has(key: string): number | undefined {
    return this.sessions.get(key);
  }

  /** The index of the session of `key`, set up in the worker the first time. */
  async session(key: string, setup: () => Omit<SessionSetup, 'index'>): Promise<number> {
    let index = this.sessions.get(key);
    if (index === undefined) {
      index = this.sessions.size;
      this.port.postMessage({ ...setup(), index } satisfies SessionSetup);
      this.send(SETUP);
      await this.done();
      this.sessions.set(key, index);
    }
    return index;
  }

  /** Start session `index` on the shard now in `x` / `y`; `done()` waits for it. */
  start(index: number): void {
    this.send(index);
  }

  async close(): Promise<void> {
    if (!this.failure) {
      try { this.send(STOP); } catch { /* already gone */ }
    }
    await this.worker.terminate();
    this.port.close();
  }
}
