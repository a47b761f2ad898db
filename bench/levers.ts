/**
 * Issue 14's levers, each measured against what it replaced, side by side in one run
 * (CPU time of this process, user + system, which a loaded machine distorts less than wall
 * time; the 1-minute load average is printed):
 *
 *   MaxPoolGrad per call on DeepID's three pools (batch 64): the native wasm kernel vs
 *   goodnet's (src/engine/kernels/max_pool_grad.ts), and the forward MaxPool for scale; checks
 *   the two give identical gradients on ReLU-like (non-negative, tied) data.
 *   Training images per CPU second of the demo's DeepID with each MaxPoolGrad installed.
 *   `goodnet --help` CPU time per run with lazy command imports vs all commands imported
 *   (`goodnet eval --help`, which loads tfjs, is the nearest eager path still in the tree).
 *
 *   npx tsc -p bench && node dist/bench/bench/levers.js [--batches N]
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, tf } from '../src/engine/backend.js';
import { nativeWasmKernel } from '../src/engine/kernels/index.js';
import { deepId } from '../src/models/deepid.js';
import { train } from '../src/models/train.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const i = process.argv.indexOf('--batches');
const BATCHES = i >= 0 ? Number(process.argv[i + 1]) : 10;
const BATCH = 64;

function cpuMs(f: () => void, reps: number): number {
  f();
  const c0 = process.cpuUsage();
  for (let r = 0; r < reps; r++) f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / reps;
}

await initBackend('wasm');
const goodnetKernel = tf.getKernel('MaxPoolGrad', 'wasm')!;
const native = nativeWasmKernel('MaxPoolGrad');
if (native === undefined) throw new Error('goodnet MaxPoolGrad is not installed');
const backend = tf.backend();
const install = (kernelFunc: tf.KernelFunc) => {
  tf.unregisterKernel('MaxPoolGrad', 'wasm');
  tf.registerKernel({ kernelName: 'MaxPoolGrad', backendName: 'wasm', kernelFunc });
};

console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
console.log('| MaxPoolGrad, batch 64 | native wasm | goodnet | speed-up | forward MaxPool | identical |');
console.log('|:--|--:|--:|--:|--:|:-:|');
for (const shape of [[BATCH, 52, 44, 20], [BATCH, 24, 20, 40], [BATCH, 10, 8, 60]] as Array<[number, number, number, number]>) {
  // ReLU-like: non-negative, a third exact zeros, small integers so that windows tie.
  const x = tf.relu(tf.round(tf.randomUniform(shape, -2, 4, 'float32', 1)));
  const attrs = { filterSize: [2, 2], strides: [2, 2], pad: 'valid' } as unknown as tf.NamedAttrMap;
  const y = tf.engine().runKernel('MaxPool', { x }, attrs) as tf.Tensor;
  const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 2);
  const run = (f: tf.KernelFunc) => tf.engine().makeTensorFromTensorInfo(f({ inputs: { dy, input: x, output: y }, backend, attrs }) as tf.TensorInfo);
  const a = run(native);
  const b = run(goodnetKernel.kernelFunc);
  // Where a window's max is 0 the native kernel picks its first tap; a ReLU's gradient is 0 there.
  const mask = tf.cast(tf.greater(x, 0), 'float32');
  const same = tf.all(tf.equal(tf.mul(a, mask), tf.mul(b, mask))).dataSync()[0] === 1;
  const tn = cpuMs(() => run(native).dispose(), 10);
  const tg = cpuMs(() => run(goodnetKernel.kernelFunc).dispose(), 10);
  const tf0 = cpuMs(() => (tf.engine().runKernel('MaxPool', { x }, attrs) as tf.Tensor).dispose(), 10);
  console.log(`| ${shape.slice(1).join('x')} | ${tn.toFixed(2)} ms | ${tg.toFixed(2)} ms | ${(tn / tg).toFixed(1)}x | ${tf0.toFixed(2)} ms | ${same ? 'yes' : 'NO'} |`);
  tf.dispose([x, y, dy, a, b, mask]);
}

const shape: [number, number, number] = [28, 28, 1];
const n = BATCHES * BATCH;
const images = new Uint8Array(n * 784);
for (let k = 0; k < images.length; k++) images[k] = (k * 2654435761) >>> 24;
const labels = Int32Array.from({ length: n }, (_, k) => k % 10);
const set = { images, labels, n, shape };
const rates: Record<string, number[]> = { native: [], goodnet: [] };
for (let round = 0; round < 2; round++) {
  for (const [name, f] of [['native', native], ['goodnet', goodnetKernel.kernelFunc]] as const) {
    install(f);
    const net = deepId({ inputShape: shape, numClasses: 10, seed: 0 });
    await train(net, { ...set, n: 2 * BATCH }, { epochs: 1, batchSize: BATCH, scale: 255 });
    const c0 = process.cpuUsage();
    await train(net, set, { epochs: 1, batchSize: BATCH, scale: 255 });
    const c = process.cpuUsage(c0);
    rates[name]!.push(n / ((c.user + c.system) / 1e6));
    net.dispose();
  }
}
install(goodnetKernel.kernelFunc);
const best = (xs: number[]) => Math.max(...xs);
console.log(`\n| training, demo DeepID, batch 64, ${BATCHES} batches | images per CPU s (best of 2) |`);
console.log('|:--|--:|');
console.log(`| native MaxPoolGrad | ${best(rates.native!).toFixed(0)} |`);
console.log(`| goodnet MaxPoolGrad | ${best(rates.goodnet!).toFixed(0)} (${(best(rates.goodnet!) / best(rates.native!)).toFixed(2)}x) |`);

const bin = join(ROOT, 'bin', 'goodnet.js');
const cpuPerRun = (args: string[]) => {
  const q = [process.execPath, bin, ...args].map((a) => `'${a}'`).join(' ');
  const out = execFileSync('bash', ['-c', `for i in $(seq 10); do ${q} >/dev/null; done; times`], { encoding: 'utf8' });
  const s = [...out.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return (s[2]! + s[3]!) / 10;
};
const lazy = cpuPerRun(['--help']);
const eager = cpuPerRun(['eval', '--help']);
console.log('\n| CLI startup, CPU s per run (10 runs) | lazy `goodnet --help` | `goodnet eval --help` (loads tfjs) |');
console.log('|:--|--:|--:|');
console.log(`| | ${lazy.toFixed(3)} | ${eager.toFixed(3)} |`);
console.log(`\nload average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
