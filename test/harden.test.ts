/**
 * Whole-command hardening (issue 13): every class of failure the red team found, run as a
 * user would run it. Inputs keep their bytes; outputs are refused before work when they
 * would touch an input, exist, or cannot be written; inputs are read only as regular files
 * inside what was named; passes stop on a signal within a batch; NaN outputs are errors.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { PNG } from 'pngjs';
import { initBackend } from '../src/engine/backend.js';
import { GoodnetError } from '../src/errors.js';
import { createH5 } from '../src/io/hdf5.js';
import { writeKerasH5 } from '../src/io/keras.js';
import { saveModel } from '../src/io/model.js';
import '../src/models/index.js'; // weights-only Keras files load into the registered architectures
import { recoverInterrupted, writeAtomically } from '../src/io/atomic.js';
import { checkOutputPath } from '../src/io/paths.js';
import { checkPngHeader } from '../src/io/safe_open.js';
import { autoBatchSize } from '../src/eval/predict.js';
import { ROOT, tempDir, assertBadInput } from './helpers.js';

const BIN = join(ROOT, 'bin', 'goodnet.js');
const FIX = join(ROOT, 'test', 'fixtures', 'harden');
const { dir, cleanup } = tempDir('goodnet-harden-');
const p = (...names: string[]) => join(dir, ...names);

function run(args: string[], opts: { cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, cwd: opts.cwd });
  return { code: r.status, out: r.stdout, err: r.stderr, signal: r.signal };
}

const hash = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

function tinyNet(): tfl.Sequential {
  const net = tfl.sequential({ name: 'tiny' });
  net.add(tfl.layers.conv2d({ name: 'c1', inputShape: [8, 8, 1], filters: 3, kernelSize: 3, activation: 'relu' }));
  net.add(tfl.layers.maxPooling2d({ name: 'pool', poolSize: 2 }));
  net.add(tfl.layers.flatten({ name: 'f' }));
  net.add(tfl.layers.dense({ name: 'd', units: 4, activation: 'softmax' }));
  return net;
}

async function writeData(path: string, n: number, labels: number[]) {
  const f = await createH5(path);
  f.create_dataset({ name: 'data', data: Float32Array.from({ length: n * 64 }, (_, i) => (i * 37) % 255), shape: [n, 1, 8, 8], dtype: '<f' });
  f.create_dataset({ name: 'label', data: Int32Array.from(labels), shape: [n], dtype: '<i' });
  f.close();
}

function writePng(path: string, v = 100) {
  const png = new PNG({ width: 8, height: 8, colorType: 0, inputColorType: 0, bitDepth: 8 });
  png.data.fill(v);
  writeFileSync(path, PNG.sync.write(png, { colorType: 0, inputColorType: 0 }));
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

before(async () => {
  await initBackend('wasm');
  await saveModel(tinyNet(), p('m.h5'));
  await saveModel(tinyNet(), p('tfjs'));
  await writeData(p('clean.h5'), 8, [0, 1, 2, 3, 0, 1, 2, 3]);
  await writeData(p('bd.h5'), 8, [1, 1, 2, 3, 1, 2, 3, 1]);
  mkdirSync(p('imgs'));
  writePng(p('imgs', 'a-label1.png'));
  writePng(p('imgs', 'b-label2.png'), 50);
  mkdirSync(p('unlabelled'));
  writePng(p('unlabelled', 'a.png'));
  writePng(p('unlabelled', 'b.png'), 50);
  // A model whose finite weights (3e38) overflow to Inf in the dense layer.
  const huge = tinyNet();
  const [k, b] = huge.getLayer('d').getWeights();
  huge.getLayer('d').setWeights([tf.fill(k!.shape, 3e38), b!]);
  await writeKerasH5(huge, p('huge.h5'));
});

after(cleanup);

// ---------------------------------------------------------------------------------------
// Data loss

test('predict --json takes its value, never an input: --json a.png b.png refuses to overwrite a.png', () => {
  const before = hash(p('imgs', 'a-label1.png'));
  const r = run(['predict', '-m', p('m.h5'), '--json', p('imgs', 'a-label1.png'), p('imgs', 'b-label2.png')]);
  assertBadInput(r, /a-label1\.png: already exists/);
  assert.equal(hash(p('imgs', 'a-label1.png')), before);
  // A bare --json before the inputs is a usage error, not a file name.
  assertBadInput(run(['predict', '-m', p('m.h5'), p('imgs'), '--json']), /option '--json <file>' argument missing/);
});

test('--json naming the model or a data set is refused before work, even with --force', () => {
  const hm = hash(p('m.h5'));
  const hc = hash(p('clean.h5'));
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', p('m.h5'), '--force']), /m\.h5: is also an input/);
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', p('clean.h5'), '--force']), /clean\.h5: is also an input/);
  assertBadInput(run(['inspect', '-m', p('tfjs'), '--json', p('tfjs', 'model.json'), '--force']), /is also an input|lies inside the input/);
  assert.equal(hash(p('m.h5')), hm);
  assert.equal(hash(p('clean.h5')), hc);
});

test('--json - prints JSON on stdout; --json FILE writes it once, and again only with --force', () => {
  const r = run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', '-']);
  assert.equal(r.code, 0, r.err);
  assert.ok(JSON.parse(r.out).clean.count === 8);
  const out = p('eval.json');
  assert.equal(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', out]).code, 0);
  assert.ok(JSON.parse(readFileSync(out, 'utf8')).clean);
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', out]), /eval\.json: already exists/);
  assert.equal(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', out, '--force']).code, 0);
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.includes('.old-')), []);
});

test('prune -o DIR --force where DIR holds the inputs, or -o ., is refused and deletes nothing', () => {
  const work = p('work');
  mkdirSync(work);
  copyFileSync(p('m.h5'), join(work, 'm.h5'));
  copyFileSync(p('clean.h5'), join(work, 'clean.h5'));
  const args = ['prune', '-m', join(work, 'm.h5'), '--clean-valid', join(work, 'clean.h5'), '--poisoned-valid', p('bd.h5'), '-t', '1', '--force'];
  assertBadInput(run([...args, '-o', work]), /work: contains the input/);
  assertBadInput(run([...args, '-o', '.'], { cwd: work }), /current folder/);
  assertBadInput(run([...args, '-o', join(work, 'm.h5', 'x')]), /lies inside the input|is a file, not a folder|existing file/);
  assert.deepEqual(readdirSync(work).sort(), ['clean.h5', 'm.h5']);
});

test('outputs are created exclusively: a second writer to the same path fails instead of deleting', async () => {
  for (const folder of [false, true]) {
    const out = p(`race-${folder}`);
    const write = (tag: string, wait: number) => writeAtomically(out, async (tmp) => {
      if (folder) {
        mkdirSync(tmp);
        writeFileSync(join(tmp, 'who'), tag);
      } else writeFileSync(tmp, tag);
      await new Promise((r) => setTimeout(r, wait));
    }, { folder: folder ? true : undefined });
    const slow = write('slow', 300);
    await write('fast', 0);
    await assert.rejects(slow, (e: unknown) => e instanceof GoodnetError && /appeared while this run was writing it/.test(e.message));
    assert.equal(readFileSync(folder ? join(out, 'who') : out, 'utf8'), 'fast');
  }
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.includes('.old-')), []);
});

test('--force keeps the old output complete under its name until the new one is in place', async () => {
  const out = p('forced');
  mkdirSync(out);
  writeFileSync(join(out, 'old'), 'old');
  await writeAtomically(out, (tmp) => {
    assert.equal(readFileSync(join(out, 'old'), 'utf8'), 'old'); // still there while the new one is written
    mkdirSync(tmp);
    writeFileSync(join(tmp, 'new'), 'new');
  }, { overwrite: true, folder: true });
  assert.deepEqual(readdirSync(out), ['new']);
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.old-')), []);
});

// ---------------------------------------------------------------------------------------
// Reading outside what was named

test('a tfjs shard that is a symlink out of the model folder is refused (file, folder link, /etc/passwd)', () => {
  for (const [name, target] of [['to-file', p('m.h5')], ['to-passwd', '/etc/passwd']] as const) {
    const m = p(`link-${name}`);
    mkdirSync(m);
    copyFileSync(p('tfjs', 'model.json'), join(m, 'model.json'));
    symlinkSync(target, join(m, 'group1-shard1of1.bin'));
    const r = run(['inspect', '-m', m]);
    assertBadInput(r, /is a link to a file outside the folder/);
    assert.doesNotMatch(r.err, /bytes/); // the outside file's size is not revealed
  }
  const m = p('link-dir');
  mkdirSync(m);
  copyFileSync(p('tfjs', 'model.json'), join(m, 'model.json'));
  symlinkSync(p('tfjs'), join(m, 'sub'));
  const doc = JSON.parse(readFileSync(join(m, 'model.json'), 'utf8'));
  doc.weightsManifest[0].paths = ['sub/group1-shard1of1.bin'];
  writeFileSync(join(m, 'model.json'), JSON.stringify(doc));
  assertBadInput(run(['inspect', '-m', m]), /outside the folder/);
});

test('a manifest listing one shard 30,000 times is refused from file sizes, before reading', () => {
  const m = p('many-shards');
  mkdirSync(m);
  copyFileSync(p('tfjs', 'group1-shard1of1.bin'), join(m, 'w.bin'));
  const doc = JSON.parse(readFileSync(p('tfjs', 'model.json'), 'utf8'));
  doc.weightsManifest[0].paths = Array.from({ length: 30_000 }, () => 'w.bin');
  writeFileSync(join(m, 'model.json'), JSON.stringify(doc));
  assertBadInput(run(['inspect', '-m', m]), /weight shards hold \d+ bytes, the manifest needs/);
});

test('a FIFO as the model, model.json, data or image is refused at once (no hang)', () => {
  const fifo = p('fifo');
  execFileSync('mkfifo', [fifo]);
  assertBadInput(run(['inspect', '-m', fifo]), /FIFO/);
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', fifo]), /FIFO|not a regular file/);
  const m = p('fifo-model');
  mkdirSync(m);
  execFileSync('mkfifo', [join(m, 'model.json')]);
  assertBadInput(run(['inspect', '-m', m]), /FIFO/);
  const imgs = p('fifo-imgs');
  mkdirSync(imgs);
  execFileSync('mkfifo', [join(imgs, 'x-label1.png')]);
  assertBadInput(run(['predict', '-m', p('m.h5'), join(imgs, 'x-label1.png')]), /FIFO|not a regular file/);
  const folder = run(['predict', '-m', p('m.h5'), imgs]); // a FIFO inside a named folder: skipped or refused, never read
  assert.equal(folder.signal, null);
  assert.ok(folder.code === 2 || folder.code === 0, folder.err);
  assertBadInput(run(['attack', '-o', p('atk'), '--dataset', 'mnist', '--trigger', 'image', '--trigger-image', join(imgs, 'x-label1.png')]), /FIFO|not a regular file/);
});

test('HDF5 data that lives in another file (virtual dataset, external link) is refused', () => {
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', join(FIX, 'vds_data.h5')]), /'data' is a virtual dataset reading vds_source_missing\.h5/);
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', join(FIX, 'extlink_data.h5')]), /'data' is an external link/);
});

// ---------------------------------------------------------------------------------------
// Resources

test('the batch is picked from the image size, and --help says so', () => {
  assert.equal(autoBatchSize([2048, 2048, 1]), 1);
  assert.equal(autoBatchSize([55, 47, 3]), 256);
  assert.equal(autoBatchSize([512, 512, 3]), 5);
  assert.match(run(['eval', '--help']).out, /picked\s+from\s+the\s+image\s+size/);
});

// ---------------------------------------------------------------------------------------
// Wrong numbers

test('NaN/Inf in the outputs is an error naming the first layer where it appears', () => {
  const r = run(['eval', '-m', p('huge.h5'), '-c', p('clean.h5')]);
  assertBadInput(r, /huge\.h5: the model's output holds NaN or Inf .*first appear at layer 'd'/);
});

test('prune on unlabelled images is refused before work', () => {
  const r = run(['prune', '-m', p('m.h5'), '--clean-valid', p('unlabelled'), '--poisoned-valid', p('unlabelled'), '-t', '1', '-o', p('pr-unl')]);
  assertBadInput(r, /unlabelled: image .* has no label/);
  assert.equal(existsSync(p('pr-unl')), false);
});

test('a PNG with a bit depth its colour type does not allow (4-bit RGB) is refused', () => {
  const good = readFileSync(p('imgs', 'a-label1.png'));
  const png = new PNG({ width: 8, height: 8 });
  const rgb = PNG.sync.write(png, { colorType: 2 });
  const bad = Buffer.from(rgb);
  bad[24] = 4; // bit depth 4 with colour type 2
  bad.writeUInt32BE(crc32(bad.subarray(12, 29)), 29);
  writeFileSync(p('rgb4.png'), bad);
  assert.throws(() => checkPngHeader(bad.subarray(0, 33), 'x.png'), /bit depth 4 is not allowed for colour type 2/);
  assert.doesNotThrow(() => checkPngHeader(good.subarray(0, 33), 'ok.png'));
  assertBadInput(run(['predict', '-m', p('m.h5'), p('rgb4.png')]), /rgb4\.png: (invalid|corrupt) PNG image \(bit depth 4/);
});

// ---------------------------------------------------------------------------------------
// Late failures: checked up front

test('--thresholds 2,2, an empty -o, --json dir/sub/ and a dangling-link output fail before work, leaving nothing', () => {
  const base = ['prune', '-m', p('m.h5'), '--clean-valid', p('clean.h5'), '--poisoned-valid', p('bd.h5'), '-t', '1'];
  assertBadInput(run([...base, '--thresholds', '2,2', '-o', p('pr-dup')]), /--thresholds lists a percentage twice/);
  assertBadInput(run([...base, '-o', '']), /an output path may not be empty/);
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', `${p('newdir', 'sub')}/`]), /ends with a slash/);
  assert.equal(existsSync(p('newdir')), false);
  symlinkSync(p('nowhere'), p('dangling.json'));
  assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', p('dangling.json')]), /is a symbolic link/);
  assert.deepEqual(['pr-dup'].filter((f) => existsSync(p(f))), []);
});

test('read-only and full file systems are refused before work (tmpfs, when root)', { skip: process.getuid?.() !== 0 ? 'needs root for mount' : false }, (t) => {
  const ro = p('ro');
  const full = p('full');
  mkdirSync(ro);
  mkdirSync(full);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]);
  } catch {
    t.skip('mount not permitted here');
    return;
  }
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
    try {
      // Fill it.
      try {
        writeFileSync(join(full, 'filler'), Buffer.alloc(64 * 1024));
      } catch { /* ENOSPC: full */ }
      assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', join(ro, 'r.json')]), /read-only file system/);
      assertBadInput(run(['eval', '-m', p('m.h5'), '-c', p('clean.h5'), '--json', join(full, 'r.json')]), /free on that file system/);
      assert.deepEqual(readdirSync(full), ['filler']);
    } finally {
      execFileSync('umount', [full]);
    }
  } finally {
    execFileSync('umount', [ro]);
  }
});

test('an output path check names what is wrong (library)', () => {
  assert.throws(() => checkOutputPath(p('x', 'y'), { inputs: [p('x')] }), /lies inside the input/);
  assert.throws(() => checkOutputPath(p('imgs'), { folder: true, overwrite: true, inputs: [p('imgs', 'a-label1.png')] }), /contains the input/);
  assert.doesNotThrow(() => checkOutputPath(p('fresh'), { folder: true, inputs: [p('m.h5')] }));
});

test('report on a summary.json with a null field is a one-line error', () => {
  const d = p('rep');
  mkdirSync(d);
  writeFileSync(join(d, 'summary.json'), JSON.stringify({ sweeps: null, baseline: null }));
  const r = run(['report', d]);
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err.trimEnd().split('\n').length, 1, r.err);
  assert.match(r.err, /^goodnet: error: /);
});

// ---------------------------------------------------------------------------------------
// CLI

test('predict --bad B --repaired B\' FOLDER keeps the folder; --top or -m with them is refused', () => {
  const r = run(['predict', '--bad', p('m.h5'), '--repaired', p('m.h5'), p('imgs'), '--json', '-']);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).predictions.length, 2);
  assertBadInput(run(['predict', '--bad', p('m.h5'), '--repaired', p('m.h5'), '--top', '2', p('imgs')]), /--top is not available/);
  assertBadInput(run(['predict', '-m', p('m.h5'), '--bad', p('m.h5'), '--repaired', p('m.h5'), p('imgs')]), /either --model or --bad/);
});

test('usage errors are one line starting with goodnet: error:', () => {
  assertBadInput(run(['eval', '-m', p('m.h5'), '--bogus']), /unknown option '--bogus'/);
  assertBadInput(run(['eval']), /required option '-m, --model <path>' not specified/);
});

// ---------------------------------------------------------------------------------------
// Signals: checked once per batch

test('SIGINT during a pass over a data set exits 130 within a batch (eval loop and activation caching)', () => {
  const script = p('sig.mjs');
  const dist = join(ROOT, 'dist', 'src');
  writeFileSync(script, `
import { initBackend } from ${JSON.stringify(join(dist, 'engine', 'backend.js'))};
import { loadModel } from ${JSON.stringify(join(dist, 'io', 'model.js'))};
import { openDataset } from ${JSON.stringify(join(dist, 'io', 'dataset.js'))};
import { predictDataset } from ${JSON.stringify(join(dist, 'eval', 'predict.js'))};
import { cutActivations } from ${JSON.stringify(join(dist, 'defense', 'activations.js'))};
import { exitOnInterrupt } from ${JSON.stringify(join(dist, 'io', 'atomic.js'))};
exitOnInterrupt();
await initBackend('wasm');
const m = await loadModel(${JSON.stringify(p('m.h5'))});
const ds = await openDataset(${JSON.stringify(p('clean.h5'))}, { expect: m.inputShape });
const which = process.argv[2];
const onProgress = (d) => { process.stderr.write('batch ' + d + '\\n'); if (d === 2) process.kill(process.pid, 'SIGINT'); };
if (which === 'predict') await predictDataset(m, ds, { batchSize: 1, onProgress });
else await cutActivations(m.net, ds, { batchSize: 1, onProgress });
process.stderr.write('finished\\n');
`);
  for (const which of ['predict', 'activations']) {
    const r = spawnSync(process.execPath, [script, which], { encoding: 'utf8', timeout: 60_000, cwd: ROOT });
    assert.equal(r.status, 130, `${which}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /finished|batch 4/);
  }
});

test('demo --force keeps the old folder aside until it succeeds, and puts it back when it fails', async () => {
  const { runDemo } = await import('../src/demo.js');
  const out = p('demo-old');
  mkdirSync(out);
  writeFileSync(join(out, 'keep'), 'old demo\n');
  await assert.rejects(runDemo({ out, overwrite: true, dataset: p('no-such-data.h5') }), /no-such-data\.h5/);
  assert.equal(readFileSync(join(out, 'keep'), 'utf8'), 'old demo\n');
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.demo-old')), []);
});

test('fineprune honours --layout (and takes --batch-size as its training batch)', () => {
  // The data is stored (N,1,8,8): read as NHWC it is 1x8x8 and cannot fit the 8x8x1 model.
  const r = run(['fineprune', '-m', p('m.h5'), '--clean-valid', p('clean.h5'), '--prune-fraction', '0.5', '-e', '1', '--layout', 'nhwc', '--batch-size', '4']);
  assertBadInput(r, /clean\.h5: .*(fit|8x8x1)/);
});

test('a Keras weight stored as a virtual dataset of a missing file is refused (python3 + h5py make it)', (t) => {
  const vds = p('vds-weights.h5');
  copyFileSync(p('m.h5'), vds);
  const script = `
import h5py, sys
f = h5py.File(sys.argv[1], 'r+')
names = []
f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and n.endswith('kernel:0') else None)
name = names[0]
shape, dtype = f[name].shape, f[name].dtype
del f[name]
layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
layout[...] = h5py.VirtualSource('missing-source.h5', 'w', shape=shape)
f.create_virtual_dataset(name, layout, fillvalue=0)
f.close()
print(name)`;
  const py = spawnSync('python3', ['-c', script, vds], { encoding: 'utf8' });
  if (py.status !== 0) {
    t.skip(`python3 with h5py not available: ${py.stderr.trim().split('\n').at(-1) ?? py.error?.message}`);
    return;
  }
  assertBadInput(run(['inspect', '-m', vds]), /vds-weights\.h5: .*is a virtual dataset reading missing-source\.h5/);
});

test('prune on a model whose outputs overflow is an error naming the layer, before the sweep', () => {
  const r = run(['prune', '-m', p('huge.h5'), '--clean-valid', p('clean.h5'), '--poisoned-valid', p('bd.h5'), '-t', '1', '-o', p('pr-huge')]);
  assertBadInput(r, /huge\.h5: the model's output holds NaN or Inf .*layer 'd'/);
  assert.equal(existsSync(p('pr-huge')), false);
});

test('recoverInterrupted: puts back the one aside copy of a killed run, removes stale ones, never touches a live run\'s', () => {
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const deadPid = Number(dead.stdout);
  assert.ok(deadPid > 0);
  const out = p('recover-out');
  const aside = p(`.recover-out.old-${deadPid}-7`);
  mkdirSync(aside);
  writeFileSync(join(aside, 'kept'), 'old');
  const mine = p(`.recover-out.old-${process.pid}-8`); // a live run's (this process): left alone
  mkdirSync(mine);
  const r = recoverInterrupted(out);
  assert.equal(r.restored, aside);
  assert.equal(readFileSync(join(out, 'kept'), 'utf8'), 'old');
  assert.equal(existsSync(aside), false);
  assert.equal(existsSync(mine), true);
  // The output exists: a dead run's aside copy is stale and removed; the live one stays.
  mkdirSync(aside);
  assert.deepEqual(recoverInterrupted(out).removed, [aside]);
  assert.equal(existsSync(aside), false);
  assert.equal(existsSync(mine), true);
  assert.equal(readFileSync(join(out, 'kept'), 'utf8'), 'old');
  // Two dead candidates and no output: nothing is guessed.
  rmSync(out, { recursive: true });
  mkdirSync(aside);
  mkdirSync(p(`.recover-out.old-${deadPid}-9`));
  assert.equal(recoverInterrupted(out).restored, undefined);
  assert.equal(existsSync(out), false);
});

test('--force replacing a file: one rename, no aside copy or temp left', async () => {
  const f = p('force-file.txt');
  writeFileSync(f, 'old');
  await writeAtomically(f, (tmp) => writeFileSync(tmp, 'new'), { overwrite: true });
  assert.equal(readFileSync(f, 'utf8'), 'new');
  assert.deepEqual(readdirSync(p('.')).filter((n) => n.startsWith('.force-file.txt.')), []);
});

test('SIGKILL at any moment of a --force replacement leaves the old or the new output complete under its name', async () => {
  const ATOMIC = join(ROOT, 'dist', 'src', 'io', 'atomic.js');
  const script = p('force-kill.mjs');
  writeFileSync(script, `import { mkdirSync, writeFileSync } from 'node:fs';
import { writeAtomically } from ${JSON.stringify(ATOMIC)};
const out = process.argv[2];
process.stderr.write('start\\n');
await writeAtomically(out, async (tmp) => {
  mkdirSync(tmp);
  for (let i = 0; i < 400; i++) writeFileSync(tmp + '/new-' + i, 'n');
  await new Promise((r) => setTimeout(r, 30));
}, { overwrite: true, folder: true });
process.stderr.write('done\\n');`);
  const { spawn } = await import('node:child_process');
  for (const delay of [0, 40, 80, 160, 320]) {
    const out = p(`force-kill-${delay}`);
    mkdirSync(out);
    for (let i = 0; i < 2000; i++) writeFileSync(join(out, `old-${i}`), 'o');
    await new Promise<void>((resolve) => {
      const child = spawn(process.execPath, [script, out], { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr.on('data', (d: Buffer) => {
        if (/start/.test(d.toString())) setTimeout(() => child.kill('SIGKILL'), delay);
      });
      child.on('close', () => resolve());
    });
    // Between the folder's two renames the old output sits aside; the next output check puts it back.
    recoverInterrupted(out);
    assert.deepEqual(readdirSync(p('.')).filter((n) => n.startsWith(`.force-kill-${delay}.old-`)), [], `delay ${delay}: no old copy left aside`);
    const names = readdirSync(out);
    const old = names.filter((n) => n.startsWith('old-')).length;
    const fresh = names.filter((n) => n.startsWith('new-')).length;
    assert.ok((old === 2000 && fresh === 0) || (old === 0 && fresh === 400), `delay ${delay}: ${old} old and ${fresh} new files under the final name`);
  }
});
