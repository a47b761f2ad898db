/**
 * Make the browser page's built-in demo (web/demo/): a lab BadNet and small CSAW HDF5 sets.
 *
 *   npm run web:demo -- [LAB_DIR] [N]
 *
 * LAB_DIR is a folder written by `goodnet attack` (models/bd_net.h5, data/cl/{valid,test}.h5,
 * data/bd/{bd_valid,bd_test}.h5, attack.json); N (default 500) images of each set are kept,
 * the first N rows, written gzip-compressed. The model is copied as is.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../src/io/dataset.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { initBackend } from '../src/engine/backend.js';

const lab = process.argv[2] ?? '/work/labs/deepid-patch';
const n = Number(process.argv[3] ?? 500);
const out = new URL('../../../web/demo/', import.meta.url).pathname;

await initBackend('wasm');
mkdirSync(out, { recursive: true });
const sets: [string, string][] = [
  ['data/cl/valid.h5', 'clean_valid.h5'], ['data/bd/bd_valid.h5', 'poisoned_valid.h5'],
  ['data/cl/test.h5', 'clean_test.h5'], ['data/bd/bd_test.h5', 'poisoned_test.h5'],
];
for (const [from, to] of sets) {
  const ds = await openDataset(join(lab, from), { scale: 1 });
  const [h, w, c] = ds.imageShape;
  const k = Math.min(n, ds.length);
  const images = new Uint8Array(k * h * w * c);
  const labels: number[] = [];
  for await (const b of ds.batches(256)) {
    for (let i = 0; i < b.n && b.start + i < k; i++) {
      labels.push(b.y[i]!);
      const off = (b.start + i) * h * w * c;
      for (let j = 0; j < h * w * c; j++) images[off + j] = Math.round(b.x[i * h * w * c + j]!);
    }
    if (b.start + b.n >= k) break;
  }
  ds.close();
  await writeCsawData(join(out, to), images, labels, k, h, w, c, { overwrite: true, compression: 9 });
  console.log(`${to}: ${k} images from ${join(lab, from)}`);
}
copyFileSync(join(lab, 'models/bd_net.h5'), join(out, 'bd_net.h5'));
const attack = JSON.parse(readFileSync(join(lab, 'attack.json'), 'utf8')) as { target?: number; dataset?: { classNames?: string[] } };
writeFileSync(join(out, 'demo.json'), `${JSON.stringify({
  lab: attack, images: n,
  files: { model: 'bd_net.h5', cleanValid: 'clean_valid.h5', poisonedValid: 'poisoned_valid.h5', cleanTest: 'clean_test.h5', poisonedTest: 'poisoned_test.h5' },
}, null, 2)}\n`);
console.log(`wrote ${out}`);
