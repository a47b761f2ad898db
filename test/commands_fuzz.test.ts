/**
 * The command fuzzer (src/fuzz/commands.ts): the kept cases (test/fixtures/commands: the
 * red team's data-loss examples, a concurrent pair, a signal) and a 50-case seeded slice of
 * quick subcommands hold every invariant: inputs unchanged, no incomplete output under a
 * final name, exit codes 0/2/130/143, one-line errors, no process left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { fuzzCommands, generateCase, replayCases } from '../src/fuzz/commands.js';
import seedrandom from 'seedrandom';
import { ROOT } from './helpers.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'commands');

test('kept command cases hold every invariant', async () => {
  await initBackend('cpu');
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).map((f) => join(FIXTURES, f));
  assert.ok(files.length >= 6);
  const results = await replayCases(files);
  assert.deepEqual(results.filter((r) => !r.ok).map((r) => `${r.case.args.join(' ')}: ${r.problems.join('; ')}`), []);
  const byId = new Map(results.map((r) => [r.case.id, r]));
  assert.deepEqual(byId.get(9001)!.codes, [2]); // predict --json IMAGE IMAGE: refused, image kept
  assert.deepEqual(byId.get(9002)!.codes, [2]); // prune -o INPUTS --force: refused
  assert.deepEqual(byId.get(9003)!.codes, [2]); // --json=MODEL --force: refused
  assert.deepEqual([...byId.get(9004)!.codes].sort(), [0, 2]); // two runs to one output: one wins, one exits 2
});

test('generated cases shuffle options, use --opt=value and aim outputs only at what the case reads', () => {
  const rng = seedrandom('shape');
  const cases = Array.from({ length: 200 }, (_, i) => generateCase(rng, i));
  assert.ok(cases.some((c) => c.args.some((a) => /^--[a-z-]+=/.test(a))));
  assert.ok(cases.some((c) => c.signal?.name === 'SIGKILL') && cases.some((c) => c.concurrent));
  for (const c of cases) {
    for (const o of c.outputs.filter((x) => x.target === 'input-file')) {
      // Named twice: as the output and as something the case reads.
      assert.ok(o.path === '@IN/.' || c.args.filter((a) => a.endsWith(o.path)).length >= 2, `${c.args.join(' ')} -> ${o.path}`);
    }
  }
});

test('a 50-case seeded command fuzz slice finds nothing', async () => {
  await initBackend('cpu');
  const r = await fuzzCommands({ count: 50, seed: 0, light: true, parallel: 4 });
  assert.equal(r.results.length, 50);
  assert.deepEqual(r.results.filter((x) => !x.ok).map((x) => `goodnet ${x.case.args.join(' ')} -> ${x.codes.join(',')}: ${x.problems.join('; ')}`), []);
  const codes = new Set(r.results.flatMap((x) => x.codes.map(String)));
  assert.ok(codes.has('0') && codes.has('2'), `both successes and refusals occur: ${[...codes].join(',')}`);
});
