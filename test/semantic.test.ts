/**
 * Semantic checks through the CLI, with their exact messages: thresholds outside (0,100),
 * an empty poisoned set, a repaired model of another architecture, an output folder that
 * is an existing file (refused even with --force; the file is left alone).
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { createH5 } from '../src/io/hdf5.js';
import { saveModel } from '../src/io/model.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { ROOT, tempDir } from './helpers.js';

const BIN = join(ROOT, 'bin', 'goodnet.js');
const { dir, cleanup } = tempDir('goodnet-sem-');
const p = (name: string) => join(dir, name);

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Exit 2 and exactly this one stderr line. */
function assertError(r: ReturnType<typeof run>, line: string): void {
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err.trimEnd(), `goodnet: error: ${line}`);
}

before(async () => {
  await initBackend('cpu');
  const net = tfl.sequential({ layers: [
    tfl.layers.conv2d({ name: 'conv', inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu' }),
    tfl.layers.maxPooling2d({ name: 'pool', poolSize: 2 }),
    tfl.layers.flatten({ name: 'f' }),
    tfl.layers.dense({ name: 'd', units: 3, activation: 'softmax' })] });
  await saveModel(net, p('m.h5'));
  const other = tfl.sequential({ layers: [tfl.layers.flatten({ name: 'flat', inputShape: [8, 8, 1] }), tfl.layers.dense({ name: 'out', units: 3, activation: 'softmax' })] });
  await saveModel(other, p('other.h5'));
  const n = 12;
  await writeCsawData(p('cl.h5'), new Uint8Array(n * 64).map((_, i) => (i * 37) % 256), Array.from({ length: n }, (_, i) => i % 3), n, 8, 8, 1);
  await writeCsawData(p('bd.h5'), new Uint8Array(n * 64).map((_, i) => (i * 11) % 256), Array.from({ length: n }, (_, i) => 1 + (i % 2)), n, 8, 8, 1);
  const f = await createH5(p('empty.h5'));
  f.create_dataset({ name: 'data', data: new Float32Array(0), shape: [0, 8, 8, 1], dtype: '<f' });
  f.create_dataset({ name: 'label', data: new Float64Array(0), shape: [0], dtype: '<d' });
  f.close();
  writeFileSync(p('afile'), 'keep me\n');
});

after(cleanup);

const prune = (...extra: string[]) => ['prune', '-m', p('m.h5'), '--clean-valid', p('cl.h5'), '--poisoned-valid', p('bd.h5'), '-t', '0', ...extra];

test('prune --thresholds outside (0, 100) is a usage error naming the value', () => {
  for (const bad of ['0', '100', '2,-1', '150']) {
    const r = run(...prune('--thresholds', bad, '-o', p('o')));
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err.split('\n')[0],
      `goodnet: error: option '--thresholds <list>' argument '${bad}' is invalid. --thresholds must be percentages in (0, 100), comma-separated (e.g. 2,4,10), got '${bad}' (run with --help for usage)`);
  }
});

test('an empty poisoned set is refused by eval and prune', () => {
  const msg = `${p('empty.h5')}: data set is empty (dataset 'data' has shape (0,8,8,1))`;
  assertError(run('eval', '-m', p('m.h5'), '-p', p('empty.h5'), '-t', '0'), msg);
  assertError(run('prune', '-m', p('m.h5'), '--clean-valid', p('cl.h5'), '--poisoned-valid', p('empty.h5'), '-t', '0', '-o', p('o')), msg);
});

test('goodnet goodnet refuses a repaired model of another architecture', () => {
  const r = run('goodnet', '--bad', p('m.h5'), '--repaired', p('other.h5'), '--clean-test', p('cl.h5'), '--poisoned-test', p('bd.h5'), '-t', '0');
  assertError(r, `${p('other.h5')}: repaired model does not match the BadNet's architecture (layer 0 is flat:Flatten: here but conv:Conv2D:3x3x1x4/4 in the BadNet)`);
});

test('an output folder that is an existing file is refused, even with --force, and the file is kept', () => {
  const isFile = `${p('afile')}: is an existing file, not a folder; choose another output folder`;
  assertError(run(...prune('-o', p('afile'))), isFile);
  assertError(run(...prune('-o', p('afile'), '--force')), isFile);
  assertError(run('strip', '-m', p('m.h5'), '--clean-valid', p('cl.h5'), '--clean-test', p('cl.h5'), '-o', p('afile'), '--force'), isFile);
  assertError(run('attack', '--out', p('afile'), '--force', '--dataset', p('cl.h5'), '-e', '1'), isFile);
  assertError(run('demo', '--out', p('afile'), '--force'), isFile);
  assertError(run(...prune('-o', join(p('afile'), 'sub'))), `${join(p('afile'), 'sub')}: cannot create the output: ${p('afile')} is a file, not a folder`);
  assert.equal(readFileSync(p('afile'), 'utf8'), 'keep me\n');
  // Without --force an existing output is never replaced: fineprune -o keeps the file too.
  assertError(run('fineprune', '-m', p('m.h5'), '--clean-valid', p('cl.h5'), '-o', p('afile')),
    `${p('afile')}: already exists (use --force to overwrite)`);
  assert.equal(readFileSync(p('afile'), 'utf8'), 'keep me\n');
});
