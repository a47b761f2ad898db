// scratch: train() on ort with threads 1 / 2 (data-parallel), per arch, steady-state img/s
import { initBackend } from '../src/engine/backend.js';
import { buildArchitecture } from '../src/models/index.js';
import { train } from '../src/models/train.js';
const BATCH = 64, B = Number(process.env.BATCHES ?? 40);
(globalThis as any).__m = [];
await initBackend('wasm');
for (const arch of (process.argv[2] ?? 'deepid,vgg,resnet').split(',')) {
  for (const threads of (process.argv[3] ?? '1,2').split(',').map(Number)) {
    const shape: [number, number, number] = [28, 28, 1];
    const n = (B + 1) * BATCH;
    const images = new Uint8Array(n * 784);
    for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
    const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
    const net = buildArchitecture(arch, { inputShape: shape, numClasses: 10, seed: 0 });
    let t0 = 0, t1 = 0, c0 = process.cpuUsage(), c1 = c0;
    (globalThis as any).__dp = []; (globalThis as any).__dp2 = [];
    const h = await train(net, { images, labels, n, shape }, { epochs: 1, batchSize: BATCH, scale: 255, threads, engine: 'ort',
      onBatch: (_e, done) => { if (done === BATCH) { t0 = performance.now(); c0 = process.cpuUsage(); } if (done === n) { t1 = performance.now(); c1 = process.cpuUsage(c0); } } });
    console.log(`${arch} threads ${threads}: ${(B * BATCH / ((t1 - t0) / 1000)).toFixed(0)} img/s, ${(B * BATCH / ((c1.user + c1.system) / 1e6)).toFixed(0)} per CPU s, loss ${h[0]!.loss.toFixed(4)}`);
    const tr = (globalThis as any).__dp as number[][], tr2 = (globalThis as any).__dp2 as number[][];
    console.log(tr.length, tr2.length);
    if (tr.length > 6 && tr2.length === tr.length) {
      const d = tr.slice(5).map((r, k) => { const i = k + 5; const q = tr2[i]!; return [r[0]! - q[0]!, r[1]! - r[0]!, r[2]! - r[1]!, r[3]! - r[2]!, q[1]! - r[3]!, q[2]! - q[1]!, q[0]! - tr2[i - 1]![2]!]; });
      const med = (k: number) => d.map((r) => r[k]!).sort((x, y) => x - y)[d.length >> 1]!.toFixed(2);
      const mean = (k: number) => (d.reduce((a, r) => a + r[k]!, 0) / d.length).toFixed(2);
      console.log(`  means: ${[0, 1, 2, 3, 4, 5, 6].map(mean).join(" | ")}`);
      console.log(`  entry->run ${med(0)} | own run ${med(1)} | copy outs ${med(2)} | wait worker ${med(3)} | sum+bn ${med(4)} | adam ${med(5)} | outside ${med(6)}`);
    }
    net.dispose();
  }
}
const mm = (globalThis as any).__m as number[][] | undefined;
if (mm) { const d = mm.slice(5).map((r) => [r[1]! - r[0]!, r[2]! - r[1]!, r[3]! - r[2]!, r[4]! - r[3]!]); const mean = (k: number) => (d.reduce((a, r) => a + r[k]!, 0) / d.length).toFixed(3); console.log(`  session+layout ${mean(0)} | weights to SAB ${mean(1)} | workers start ${mean(2)} | own feeds ${mean(3)}`); }
