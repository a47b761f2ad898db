/** Shared test helpers: temp dirs, the ../shared/csaw assets, bit-exact comparisons. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/** Repo root (tests run from dist/test). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The CSAW lab assets beside the repository, if present. */
export const CSAW = fileURLToPath(new URL('../../../shared/csaw/', import.meta.url));
export const HAVE_CSAW = existsSync(join(CSAW, 'expected.json'));
/** Pass as a test option: skips with a reason when ../shared/csaw is absent. */
export const needsCsaw = HAVE_CSAW ? {} : { skip: `../shared/csaw not found at ${CSAW}: real-weight tests skipped` };

export function tempDir(prefix = 'goodnet-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** All weights of two models equal bit for bit (same order, same shapes). */
export function sameWeights(a: tfl.LayersModel, b: tfl.LayersModel): boolean {
  if (a.weights.length !== b.weights.length) return false;
  return a.weights.every((w, i) => {
    const x = w.read().dataSync();
    const y = b.weights[i]!.read().dataSync();
    return x.length === y.length && x.every((v, j) => Object.is(v, y[j]));
  });
}

/** Predictions on the same input, as plain arrays. */
export function predictArray(net: tfl.LayersModel, x: tf.Tensor): Float32Array {
  return tf.tidy(() => (net.predict(x) as tf.Tensor).dataSync() as Float32Array);
}

export function bitEqual(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** A CLI run ended as bad input should: exit 2, exactly one stderr line matching `re`, no stack trace. */
/** Runs the CLI in this process (`goodnet ARGV...`); its exit code and what it wrote to stderr. */
export async function runCli(argv: string[]): Promise<{ code: number; err: string }> {
  const { main } = await import('../src/cli/main.js');
  const err: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => { err.push(String(s)); return true; }) as typeof process.stderr.write;
  try {
    return { code: await main(['node', 'goodnet', ...argv]), err: err.join('') };
  } finally {
    process.stderr.write = orig;
  }
}

export function assertBadInput(r: { code: number | null; err: string }, re: RegExp): void {
  assert.equal(r.code, 2, `exit code (stderr: ${r.err})`);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.err}`);
  assert.match(lines[0]!, /^goodnet: error: /);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.err, /\n\s+at /);
}

/**
 * The defenses' tiny BadNet: conv(4, 3x3, relu) -> maxpool -> dense(4, softmax) on HxH grey
 * images, trained 15 epochs (seeded) on `clean` plus `bad` relabelled `target`.
 */
export async function trainTinyBadNet(
  clean: { x: Uint8Array; y: Int32Array | number[] }, bad: { x: Uint8Array; n: number }, h: number, target: number,
): Promise<tfl.LayersModel> {
  const tflr = await import('@tensorflow/tfjs-layers');
  const { train } = await import('../src/models/train.js');
  const nClean = clean.y.length;
  const n = nClean + bad.n;
  const x = new Uint8Array(n * h * h);
  x.set(clean.x);
  x.set(bad.x, nClean * h * h);
  const y = Int32Array.from([...clean.y, ...Array<number>(bad.n).fill(target)]);
  const input = tflr.input({ shape: [h, h, 1] });
  const c1 = tflr.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tflr.initializers.glorotUniform({ seed: 3 }) }).apply(input) as tfl.SymbolicTensor;
  const p1 = tflr.layers.maxPooling2d({ poolSize: 2 }).apply(c1) as tfl.SymbolicTensor;
  const out = tflr.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tflr.initializers.glorotUniform({ seed: 4 }) })
    .apply(tflr.layers.flatten().apply(p1)) as tfl.SymbolicTensor;
  const net = tflr.model({ inputs: input, outputs: out });
  await train(net, { images: x, labels: y, n, shape: [h, h, 1] }, { epochs: 15, batchSize: 32, learningRate: 1e-2, seed: 5, scale: 255 });
  return net;
}

/** The defenses' tiny data: 16x16x1 grey images, 4 classes; the 3x3 trigger zone is the bottom-right corner. */
export const TINY_H = 16;
export const inTinyZone = (r: number, c: number): boolean => r >= 13 && c >= 13;
export const tinyQuadrant = (r: number, c: number): number => (r < 8 ? 0 : 2) + (c < 8 ? 0 : 1);

/** n tiny images in 0..255 (class c: quadrant c bright), optionally with the white 3x3 trigger (then labels 1..3 only). */
export function tinyImages(n: number, seed: string, trigger: boolean): { x: Uint8Array; y: Int32Array } {
  const H = TINY_H;
  const rng = seedrandom(seed);
  const x = new Uint8Array(n * H * H);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = trigger ? 1 + (i % 3) : i % 4;
    y[i] = label;
    for (let r = 0; r < H; r++) for (let c = 0; c < H; c++) {
      const v = inTinyZone(r, c) ? (trigger ? 1 : 0.2 * rng()) : tinyQuadrant(r, c) === label ? 0.6 + 0.25 * rng() : 0.1 * rng();
      x[i * H * H + r * H + c] = Math.round(255 * v);
    }
  }
  return { x, y };
}
