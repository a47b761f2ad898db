/**
 * Training throughput of the BadNet lab's model, goodnet (tfjs wasm, one thread, the same
 * `train` loop `goodnet attack` uses) against a PyTorch peer (bench/train_peer_torch.py) on
 * the same topology, batch size and optimizer, side by side in one run:
 *
 *   npx tsc -p bench && node dist/bench/bench/train_compare.js [batches]
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/engine/backend.js';
import { deepId } from '../src/models/deepid.js';
import { train } from '../src/models/train.js';

const batches = Number(process.argv[2] ?? 60);
const BATCH = 64;

async function goodnet(): Promise<number> {
  await initBackend('wasm');
  const net = deepId({ inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  const n = batches * BATCH;
  const images = new Uint8Array(n * 784);
  for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  const set = { images, labels, n, shape: [28, 28, 1] as [number, number, number] };
  await train(net, { ...set, n: 5 * BATCH }, { epochs: 1, batchSize: BATCH, scale: 255 }); // warm-up
  const [s] = await train(net, set, { epochs: 1, batchSize: BATCH, scale: 255 });
  return s!.imagesPerSecond;
}

function torch(threads: number): number | undefined {
  const script = fileURLToPath(new URL('../../../bench/train_peer_torch.py', import.meta.url));
  try {
    const out = execFileSync('/usr/bin/python3', [script, '--batches', String(batches), '--threads', String(threads)], { encoding: 'utf8' });
    return (JSON.parse(out.trim().split('\n').at(-1)!) as { imagesPerSecond: number }).imagesPerSecond;
  } catch (err) {
    console.error(`PyTorch peer unavailable (apt-get install python3-torch libopenblas0-pthread): ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

const g = await goodnet();
const t1 = torch(1);
const t2 = torch(2);
console.log(`DeepID 28x28x1 (padded to 32x32), 10 classes, Adam, batch ${BATCH}, ${batches} batches of random data\n`);
console.log('| trainer | images/s | vs PyTorch (2 threads) |');
console.log('|---|---:|---:|');
console.log(`| goodnet (tfjs wasm, 1 thread) | ${g.toFixed(0)} | ${t2 ? (g / t2).toFixed(2) : '-'}x |`);
if (t1) console.log(`| PyTorch, 1 thread | ${t1.toFixed(0)} | ${t2 ? (t1 / t2).toFixed(2) : '-'}x |`);
if (t2) console.log(`| PyTorch, 2 threads | ${t2.toFixed(0)} | 1.00x |`);
