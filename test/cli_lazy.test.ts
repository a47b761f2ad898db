/**
 * Lazy CLI startup: `goodnet --help` lists every command without importing any command
 * module (no tfjs), and says exactly what the eagerly built program says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Help } from 'commander';
import { COMMAND_SPECS, commandsNeeded, program } from '../src/cli/main.js';
import { ROOT } from './helpers.js';

test('each command spec matches the real command (name, usage term, summary)', async () => {
  const help = new Help();
  for (const spec of COMMAND_SPECS) {
    const cmd = await spec.load();
    assert.equal(cmd.name(), spec.name);
    assert.equal(spec.term, help.subcommandTerm(cmd), `${spec.name}: term`);
    assert.equal(spec.summary, cmd.summary(), `${spec.name}: summary`);
  }
});

test('the lazy root help is the eager root help', async () => {
  const lazy = await program(['node', 'goodnet', '--help']);
  const eager = await program(['node', 'goodnet', '--help'], true);
  assert.equal(lazy.helpInformation(), eager.helpInformation());
  assert.match(lazy.helpInformation(), /predict \[options\] <inputs\.\.\.>\s+classify images/);
});

test('commandsNeeded: the first operand, or the one after help', () => {
  const argv = (...a: string[]) => ['node', 'goodnet', ...a];
  assert.deepEqual(commandsNeeded(argv('--help')), []);
  assert.deepEqual(commandsNeeded(argv()), []);
  assert.deepEqual(commandsNeeded(argv('--debug', 'eval', '-m', 'strip')), ['eval']);
  assert.deepEqual(commandsNeeded(argv('help', 'prune')), ['prune']);
  assert.deepEqual(commandsNeeded(argv('frob', 'eval')), []);
});

test('goodnet --help imports no tfjs; goodnet eval --help shows the full command', () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    import { main } from './dist/src/cli/main.js';
    process.stdout.write = () => true;
    const code = await main(['node', 'goodnet', '--help']);
    console.error(JSON.stringify({ code, tf: typeof globalThis._tfengine }));`], { cwd: ROOT, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(r.stderr.trim().split('\n').pop()!), { code: 0, tf: 'undefined' });
  const e = spawnSync(process.execPath, ['bin/goodnet.js', 'eval', '--help'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(e.status, 0);
  assert.match(e.stdout, /-m, --model <path>/);
});
