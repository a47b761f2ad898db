/**
 * Fuzzing: every mutant that once broke a reader (test/fixtures/fuzz) now loads or ends in
 * a one-line GoodnetError naming the file (exit 2 through the CLI), and a short seeded run
 * of fresh mutants finds nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { fixtureJobs, fuzz, runJobs } from '../src/fuzz/harness.js';
import { ROOT } from './helpers.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'fuzz');

test('every kept fuzz mutant loads or fails with a one-line GoodnetError naming it', async () => {
  const jobs = fixtureJobs(FIXTURES);
  assert.ok(jobs.length >= 10, `fixtures in ${FIXTURES}`);
  const results = await runJobs(jobs, { timeoutS: 20 });
  const bad = results.map((r, i) => ({ r, file: jobs[i]!.path })).filter(({ r }) => r.status !== 'ok' && r.status !== 'error');
  assert.deepEqual(bad.map(({ file, r }) => `${file}: ${r.status} ${r.message}`), []);
});

test('fuzz mutants through the CLI: exit 2 and one line naming the file', () => {
  const BIN = join(ROOT, 'bin', 'goodnet.js');
  for (const job of fixtureJobs(FIXTURES).filter((j) => j.kind === 'model').slice(0, 3)) {
    const r = spawnSync(process.execPath, [BIN, 'inspect', '-m', job.path], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, `${job.path}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^goodnet: error: /);
    assert.ok(lines[0]!.includes(job.path), lines[0]);
  }
});

test('a short seeded fuzz run (200 mutants) finds no hang, crash or uncaught error', async () => {
  await initBackend('cpu');
  const s = await fuzz({ count: 200, seed: 11, batch: 100 });
  assert.equal(s.mutants, 200);
  assert.deepEqual(s.failures.map((f) => `${f.kind} [${f.how}] ${f.status}: ${f.message}`), []);
  assert.ok(s.errors > 0 && s.ok > 0, `both outcomes occur: ${JSON.stringify(s)}`);
});
