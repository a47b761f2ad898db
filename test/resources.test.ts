/**
 * Resource bounds: a data set larger than the heap is streamed, and `prune` on
 * YouTube-Face-sized data (11,547 + 11,547 images of 55x47x3, the lab's DeepID) stays
 * under 2 GiB of resident memory. Both run in child processes so their memory is their own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { h5wasm } from '../src/io/hdf5.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { CSAW, ROOT, needsCsaw, tempDir } from './helpers.js';

const PER = 3 * 55 * 47;

/** Run ES module code in a child node with the given heap limit; returns its last stdout line as JSON. */
function child(code: string, heapMiB: number): Record<string, number> {
  const r = spawnSync(process.execPath, [`--max-old-space-size=${heapMiB}`, '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
}

test('a 2.05 GiB HDF5 data set streams through openDataset under a 128 MiB heap', { timeout: 300_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'big.h5');
    const n = Math.ceil((2.05 * 2 ** 30) / (PER * 4));
    const h5 = await h5wasm();
    const f = new h5.File(path, 'w');
    const rows = 2000;
    const block = (s: number, e: number) => {
      const a = new Float32Array((e - s) * PER);
      for (let r = s; r < e; r++) a.fill(r % 251, (r - s) * PER, (r - s + 1) * PER);
      return a;
    };
    const d = f.create_dataset({ name: 'data', data: block(0, rows), shape: [rows, 3, 55, 47], maxshape: [n, 3, 55, 47], chunks: [64, 3, 55, 47], dtype: '<f' });
    d.resize([n, 3, 55, 47]);
    for (let s = rows; s < n; s += rows) d.write_slice([[s, Math.min(n, s + rows)]], block(s, Math.min(n, s + rows)));
    f.create_dataset({ name: 'label', data: Float64Array.from({ length: n }, (_, i) => i % 10), shape: [n], dtype: '<d' });
    f.close();
    const r = child(`
      import { openDataset } from './dist/src/io/dataset.js';
      const ds = await openDataset(${JSON.stringify(path)}, { expect: [55, 47, 3] });
      let n = 0, bad = 0;
      for await (const b of ds.batches(256)) {
        for (let i = 0; i < b.n; i++) if (b.x[i * ${PER} + 100] !== (b.start + i) % 251 || b.x[i * ${PER} + ${PER - 1}] !== (b.start + i) % 251) bad++;
        n += b.n;
      }
      ds.close();
      console.log(JSON.stringify({ n, bad, rss: process.resourceUsage().maxRSS * 1024 }));`, 128);
    assert.equal(r.n, n);
    assert.equal(r.bad, 0, 'every image read back with its own values');
    t.diagnostic(`streamed ${n} images (2.05 GiB): peak RSS ${(r.rss! / 2 ** 20).toFixed(0)} MiB under a 128 MiB heap`);
    assert.ok(r.rss! < 2 ** 30, `peak RSS ${(r.rss! / 2 ** 20).toFixed(0)} MiB for a 2.05 GiB file`);
  } finally {
    cleanup();
  }
});

test('prune on YouTube-Face-sized data stays under 2 GiB', { ...needsCsaw, timeout: 600_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const n = 11547;
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    for (const name of ['cl.h5', 'bd.h5']) {
      const images = new Uint8Array(n * PER);
      for (let i = 0; i < images.length; i++) images[i] = rnd();
      const labels = Int32Array.from({ length: n }, () => 1 + (rnd() % 1282));
      await writeCsawData(join(dir, name), images, labels, n, 55, 47, 3);
    }
    const args = ['prune', '-m', join(CSAW, 'lab3_sunglasses_bd_weights.h5'), '--clean-valid', join(dir, 'cl.h5'),
      '--poisoned-valid', join(dir, 'bd.h5'), '-t', '0', '--order', 'asc', '-o', join(dir, 'out')];
    const r = child(`
      import { main } from './dist/src/cli/main.js';
      const code = await main(['node', 'goodnet', ...${JSON.stringify(args)}]);
      console.log(JSON.stringify({ code, rss: process.resourceUsage().maxRSS * 1024 }));`, 4096);
    assert.equal(r.code, 0);
    t.diagnostic(`prune, 11,547 + 11,547 images of 55x47x3: peak RSS ${(r.rss! / 2 ** 20).toFixed(0)} MiB`);
    assert.ok(r.rss! < 2 * 2 ** 30, `peak RSS ${(r.rss! / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    cleanup();
  }
});
