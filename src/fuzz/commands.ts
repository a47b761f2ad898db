/**
 * The command fuzzer (`npm run fuzz -- --commands`): random but valid-looking command lines
 * of the subcommands over small real inputs, run as a user runs them (child processes of
 * bin/goodnet.js), with option orders shuffled, `--opt=value` forms, outputs pointed at
 * inputs, links, the current folder, existing files, read-only and full file systems (small
 * tmpfs mounts, when root), two runs at once to one output, and SIGINT/SIGTERM/SIGKILL at
 * random moments. After every case:
 *
 *  - every input's SHA-256 is unchanged;
 *  - nothing lies under a final output name unless it is complete and valid (JSON parses,
 *    an output folder holds its summary, a model file has its signature), and a file that
 *    existed before is unchanged unless --force was given and the run exited 0;
 *  - the exit code is 0, 2, 130 or 143 (1 only with "goodnet: internal error"), or the
 *    process died of the SIGKILL it was sent;
 *  - an error is one line (`goodnet: error: ...`), with no stack trace;
 *  - no process of the run's process group is alive 5 s after it exited.
 *
 * Failing cases are written as JSON to the save folder; `replayCase` runs one again (the
 * kept ones live in test/fixtures/commands/).
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { PNG } from 'pngjs';
import { createH5 } from '../io/hdf5.js';
import { saveModel } from '../io/model.js';
import { tinyNet } from './seeds.js';

const BIN = fileURLToPath(new URL('../../../bin/goodnet.js', import.meta.url));

/** Where an output option points. */
export type Target = 'fresh' | 'existing' | 'input-file' | 'input-folder' | 'inside-input' | 'cwd' | 'empty' | 'slash'
  | 'dangling-link' | 'link-to-input' | 'readonly' | 'full' | 'stdout';

/** One generated case: everything needed to run it again. */
export interface CommandCase {
  id: number;
  /** Arguments after `goodnet`, with `@IN/` and `@RUN/` placeholders for the inputs and the case's own folder. */
  args: string[];
  /** Output paths (placeholders as in args) and what each must hold when present. */
  outputs: { path: string; kind: 'json' | 'prune' | 'strip' | 'model' | 'report' | 'compare'; target: Target }[];
  force: boolean;
  signal?: { name: 'SIGINT' | 'SIGTERM' | 'SIGKILL'; afterMs: number };
  /** Run twice at once. */
  concurrent: boolean;
}

export interface CaseResult {
  case: CommandCase;
  ok: boolean;
  problems: string[];
  codes: (number | string)[];
  seconds: number;
}

// ---------------------------------------------------------------------------------------
// Inputs

interface Env {
  root: string;
  inputs: string;
  runs: string;
  /** Mounted tmpfs folders (root only), else undefined. */
  readonly?: string;
  full?: string;
  /** A finished prune output to copy for `report` cases. */
  pruneOut: string;
  hashes: Map<string, string>;
}

function filesUnder(path: string): string[] {
  const st = lstatSync(path);
  if (st.isDirectory()) return readdirSync(path).sort().flatMap((f) => filesUnder(join(path, f)));
  return st.isFile() ? [path] : [];
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

function hashInputs(dir: string): Map<string, string> {
  return new Map(filesUnder(dir).map((f) => [relative(dir, f), sha(f)]));
}

function png(path: string, v: number): void {
  const img = new PNG({ width: 8, height: 8, colorType: 0, inputColorType: 0, bitDepth: 8 });
  img.data.fill(v);
  writeFileSync(path, PNG.sync.write(img, { colorType: 0, inputColorType: 0 }));
}

async function data(path: string, n: number, labels: (i: number) => number): Promise<void> {
  const f = await createH5(path);
  f.create_dataset({ name: 'data', data: Float32Array.from({ length: n * 64 }, (_, i) => (i * 37 + n) % 255), shape: [n, 1, 8, 8], dtype: '<f' });
  f.create_dataset({ name: 'label', data: Int32Array.from({ length: n }, (_, i) => labels(i)), shape: [n], dtype: '<i' });
  f.close();
}

function tryMount(dir: string, opts: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    return undefined;
  }
}

/** Make the inputs (goodnet's own writers) and the mounts. The backend must be initialised. */
export async function setUpEnv(withPruneOutput = true, root = mkdtempSync(join(tmpdir(), 'goodnet-cmdfuzz-'))): Promise<Env> {
  const inputs = join(root, 'in');
  mkdirSync(join(inputs, 'imgs'), { recursive: true });
  const net = tinyNet();
  await saveModel(net, join(inputs, 'm.h5'));
  await saveModel(net, join(inputs, 'tfjs'));
  net.dispose();
  await data(join(inputs, 'clean.h5'), 16, (i) => i % 2);
  await data(join(inputs, 'bd.h5'), 16, () => 1);
  for (let i = 0; i < 4; i++) png(join(inputs, 'imgs', `img${i}-label${i % 2}.png`), 40 * i);
  png(join(inputs, 'trigger.png'), 255);
  const runs = join(root, 'runs');
  mkdirSync(runs);
  const readonly = tryMount(join(root, 'ro'), 'ro,size=64k');
  const full = tryMount(join(root, 'full'), 'size=64k');
  if (full) {
    try {
      writeFileSync(join(full, 'filler'), Buffer.alloc(64 * 1024));
    } catch { /* full now */ }
  }
  // One real prune output for `report` cases.
  const pruneOut = join(root, 'prune-out');
  const r = !withPruneOutput ? { code: 0, err: '' } : await runOnce(['prune', '-m', join(inputs, 'm.h5'), '--clean-valid', join(inputs, 'clean.h5'), '--poisoned-valid',
    join(inputs, 'bd.h5'), '-t', '1', '--order', 'asc', '--thresholds', '2', '-o', pruneOut], root, undefined, 120_000);
  if (r.code !== 0) throw new Error(`command fuzzer set-up: prune failed: ${r.err}`);
  return { root, inputs, runs, readonly, full, pruneOut, hashes: hashInputs(inputs) };
}

export function tearDownEnv(env: Env): void {
  for (const m of [env.readonly, env.full]) {
    if (m) {
      try {
        execFileSync('umount', [m], { stdio: 'ignore' });
      } catch { /* left mounted: rm below fails on it, ignored */ }
    }
  }
  rmSync(env.root, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------
// Generation

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
function shuffle<T>(rng: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

const IN = (f: string) => `@IN/${f}`;
const RUN = (f: string) => `@RUN/${f}`;

/** An output path for `target`; `file`: the output is a file (else a folder). */
function outputPath(rng: Rng, target: Target, name: string, file: boolean): string {
  switch (target) {
    case 'fresh': return RUN(name);
    case 'existing': return RUN(`existing${file ? '.json' : '-dir'}`);
    // Resolved once the case's own inputs are known (pointInputs): only what this run reads.
    case 'input-file': return '@PICK-FILE@';
    case 'input-folder': return '@PICK-FOLDER@';
    case 'inside-input': return `@INSIDE@${name}`;
    case 'cwd': return '.';
    case 'empty': return '';
    case 'slash': return `${RUN(name)}/`;
    case 'dangling-link': return RUN('dangling');
    case 'link-to-input': return RUN('link-to-model');
    case 'readonly': return `@RO/${name}`;
    case 'full': return `@FULL/${name}`;
    case 'stdout': return '-';
  }
}

const TARGETS: Target[] = ['fresh', 'fresh', 'fresh', 'existing', 'input-file', 'input-folder', 'inside-input', 'cwd', 'empty', 'slash',
  'dangling-link', 'link-to-input', 'readonly', 'full'];

/** One random case. `light`: only the quick subcommands (for the CI slice). */
export function generateCase(rng: Rng, id: number, light = false): CommandCase {
  const cmds = light ? ['eval', 'eval', 'predict', 'inspect', 'goodnet', 'prune', 'strip', 'clp']
    : ['eval', 'predict', 'inspect', 'goodnet', 'prune', 'strip', 'fineprune', 'report', 'clp', 'anp', 'rnp', 'nc', 'compare', 'fst', 'unlearn', 'sau'];
  const cmd = pick(rng, cmds);
  const force = rng() < 0.3;
  const groups: string[][] = [];
  const positionals: string[] = [];
  const outputs: CommandCase['outputs'] = [];
  const model = () => IN(pick(rng, ['m.h5', 'tfjs', 'tfjs/model.json']));
  const json = (p = 0.6) => {
    if (rng() >= p) return;
    const target = rng() < 0.2 ? 'stdout' : pick(rng, TARGETS);
    const path = outputPath(rng, target, 'out.json', true);
    groups.push(['--json', path]);
    if (target !== 'stdout') outputs.push({ path, kind: 'json', target });
  };
  const engine = () => {
    if (rng() < 0.3) groups.push(['--batch-size', String(pick(rng, [1, 3, 64]))]);
    if (rng() < 0.2) groups.push(['--backend', pick(rng, ['cpu', 'wasm'])]);
    if (rng() < 0.2) groups.push(['--scale', '255']);
  };
  switch (cmd) {
    case 'eval':
      groups.push(['-m', model()]);
      if (rng() < 0.8) groups.push(['-c', IN(pick(rng, ['clean.h5', 'imgs']))]);
      if (rng() < 0.6) groups.push(['-p', IN('bd.h5')], ['-t', '1']);
      json();
      engine();
      break;
    case 'predict':
      if (rng() < 0.7) groups.push(['-m', model()]);
      else groups.push(['--bad', model()], ['--repaired', IN('m.h5')]);
      positionals.push(...shuffle(rng, [IN('imgs'), IN('trigger.png'), IN('clean.h5')]).slice(0, 1 + Math.floor(rng() * 3)));
      if (rng() < 0.2) groups.push(['--top', '2']);
      json();
      engine();
      break;
    case 'inspect':
      groups.push(['-m', model()]);
      json();
      break;
    case 'goodnet':
      groups.push(['--bad', model()], ['--repaired', IN('m.h5')], ['--clean-test', IN('clean.h5')], ['--poisoned-test', IN('bd.h5')], ['-t', '1']);
      json();
      engine();
      break;
    case 'prune': {
      groups.push(['-m', model()], ['--clean-valid', IN('clean.h5')], ['--poisoned-valid', IN('bd.h5')], ['-t', '1']);
      if (rng() < 0.4) groups.push(['--clean-test', IN('clean.h5')], ['--poisoned-test', IN('bd.h5')]);
      groups.push(['--order', pick(rng, ['asc', 'desc', 'both'])], ['--thresholds', pick(rng, ['2', '2,4', '5,2', '2,2'])]);
      const target = pick(rng, TARGETS);
      const out = outputPath(rng, target, 'prune-out', false);
      groups.push(['-o', out]);
      outputs.push({ path: out, kind: 'prune', target });
      json(0.3);
      engine();
      break;
    }
    case 'strip': {
      groups.push(['-m', model()], ['--clean-valid', IN('clean.h5')], ['-n', '2'], ['--limit', '8']);
      if (rng() < 0.5) groups.push(['--clean-test', IN('clean.h5')]);
      else groups.push(['--inputs', IN(pick(rng, ['imgs', 'trigger.png']))]);
      if (rng() < 0.6) {
        const target = pick(rng, TARGETS);
        const out = outputPath(rng, target, 'strip-out', false);
        groups.push(['-o', out]);
        outputs.push({ path: out, kind: 'strip', target });
      }
      json(0.3);
      engine();
      break;
    }
    case 'fineprune': {
      groups.push(['-m', model()], ['--clean-valid', IN('clean.h5')], ['--prune-fraction', '0.5'], ['-e', '1']);
      if (rng() < 0.7) {
        const target = pick(rng, TARGETS);
        const out = outputPath(rng, target, pick(rng, ['fp.h5', 'fp-tfjs']), true);
        groups.push(['-o', out]);
        outputs.push({ path: out, kind: 'model', target });
      }
      json(0.3);
      break;
    }
    case 'clp':
    case 'anp':
    case 'rnp':
    case 'fst':
    case 'nc':
    case 'unlearn':
    case 'sau': {
      // The defense contract: -m, --clean-valid, -o (required for clp/anp), measuring sets optional.
      groups.push(['-m', model()], ['--clean-valid', IN('clean.h5')]);
      if (cmd === 'anp') groups.push(['--iterations', '2'], ['--anp-batch-size', '4']);
      if (cmd === 'rnp') groups.push(['--unlearn-epochs', '1'], ['--recover-epochs', '1'], ['--rnp-batch-size', '4']);
      if (cmd === 'fst') groups.push(['-e', '1'], ['--fst-batch-size', '4']);
      if (cmd === 'nc') groups.push(['--max-epochs', '2'], ['--steps-per-epoch', '1'], ['--labels', '0,1,2']);
      if (cmd === 'sau') groups.push(['--epochs', '1'], ['--pgd-steps', '1'], ['--sau-batch-size', '8']);
      if (cmd === 'unlearn') groups.push(['--reverse-epochs', '2'], ['--steps-per-epoch', '1'], ['--epochs', '1'], ['--rounds', '1']);
      if (rng() < 0.4) groups.push(['--clean-test', IN('clean.h5')], ['--poisoned-test', IN('bd.h5')], ['-t', '1']);
      if (cmd !== 'nc' || rng() < 0.5) {
        const target = pick(rng, TARGETS);
        const out = outputPath(rng, target, pick(rng, [`${cmd}.h5`, `${cmd}-tfjs`]), true);
        groups.push(['-o', out]);
        outputs.push({ path: out, kind: 'model', target });
      }
      json(0.4);
      engine();
      break;
    }
    case 'compare': {
      groups.push(['-m', model()], ['--clean-valid', IN('clean.h5')], ['--clean-test', IN('clean.h5')], ['--poisoned-test', IN('bd.h5')], ['-t', '1'],
        ['--defenses', 'clp']);
      if (rng() < 0.6) {
        const target = pick(rng, TARGETS);
        const out = outputPath(rng, target, 'compare-out', false);
        groups.push(['-o', out]);
        outputs.push({ path: out, kind: 'compare', target });
      }
      json(0.3);
      engine();
      break;
    }
    case 'report':
      positionals.push(RUN('report-dir'));
      outputs.push({ path: RUN('report-dir'), kind: 'report', target: 'fresh' });
      break;
  }
  if (force && cmd !== 'inspect' && cmd !== 'report') groups.push(['--force']);
  pointInputs(rng, groups, positionals, outputs);
  // Shuffle the option order; sometimes `--opt=value`; positionals first, last, or after an option.
  shuffle(rng, groups);
  const flat = groups.flatMap((g) => (g.length === 2 && g[0]!.startsWith('--') && rng() < 0.25 ? [`${g[0]}=${g[1]}`] : g));
  const where = rng();
  const args = where < 0.4 ? [cmd, ...flat, ...positionals] : where < 0.7 ? [cmd, ...positionals, ...flat] : [cmd, ...flat.slice(0, 2), ...positionals, ...flat.slice(2)];
  const r = rng();
  const signal = r < 0.12 ? { name: 'SIGINT' as const, afterMs: Math.floor(rng() * 3000) }
    : r < 0.22 ? { name: 'SIGTERM' as const, afterMs: Math.floor(rng() * 3000) }
    : r < 0.3 ? { name: 'SIGKILL' as const, afterMs: Math.floor(rng() * 3000) } : undefined;
  const concurrent = !signal && cmd !== 'report' && outputs.some((o) => o.target === 'fresh') && rng() < 0.3;
  return { id, args, outputs, force: groups.some((g) => g[0] === '--force'), signal, concurrent };
}

/**
 * Point the outputs aimed at inputs at what this case itself reads (an output at an input
 * of another command is a legitimate output, and would destroy the fuzzer's inputs).
 */
function pointInputs(rng: Rng, groups: string[][], positionals: string[], outputs: CommandCase['outputs']): void {
  const outs = new Set(outputs.map((o) => o.path));
  const read = [...groups.filter((g) => g.length === 2 && !outs.has(g[1]!)).map((g) => g[1]!), ...positionals].filter((v) => v.startsWith('@IN/'));
  const folders = read.filter((v) => /\/(imgs|tfjs)$/.test(v));
  const files = read.filter((v) => !folders.includes(v));
  const memo = new Map<string, string>(); // the output option and its record get the same path
  const resolve = (v: string): string => {
    if (!v.startsWith('@PICK-') && !v.startsWith('@INSIDE@')) return v;
    if (!memo.has(v)) memo.set(v, choose(v));
    return memo.get(v)!;
  };
  const choose = (v: string): string => {
    if (v === '@PICK-FILE@') return files.length ? pick(rng, files) : IN('.');
    if (v === '@PICK-FOLDER@') return folders.length && rng() < 0.7 ? pick(rng, folders) : IN('.');
    if (v.startsWith('@INSIDE@')) return `${folders.length ? pick(rng, folders) : pick(rng, files.length ? files : [IN('.')])}/${v.slice(8)}`;
    return v;
  };
  for (const g of groups) if (g.length === 2) g[1] = resolve(g[1]!);
  for (const o of outputs) o.path = resolve(o.path);
}

// ---------------------------------------------------------------------------------------
// Running and checking

interface Outcome { code: number | null; signal: NodeJS.Signals | null; err: string; out: string; pid: number }

function runOnce(args: string[], cwd: string, signal: CommandCase['signal'], timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const timers: NodeJS.Timeout[] = [];
    if (signal) timers.push(setTimeout(() => { try { process.kill(child.pid!, signal.name); } catch { /* gone */ } }, signal.afterMs));
    timers.push(setTimeout(() => {
      err += '\n[fuzz: hang: killed after the time limit]';
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs));
    child.on('close', (code, sig) => {
      timers.forEach(clearTimeout);
      resolve({ code, signal: sig, err, out, pid: child.pid! });
    });
  });
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function noneAliveWithin(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (groupAlive(pid)) {
    if (Date.now() > end) {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
      return false;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function resolveArg(a: string, env: Env, run: string): string {
  return a.replace(/@IN\//g, `${env.inputs}/`).replace(/@IN$/, env.inputs).replace(/@RUN\//g, `${run}/`)
    .replace(/@RO\//g, `${env.readonly ?? join(run, 'ro-unavailable')}/`).replace(/@FULL\//g, `${env.full ?? join(run, 'full-unavailable')}/`)
    .replace(/=@IN\//g, `=${env.inputs}/`);
}

/** Is what lies at `path` a complete output of `kind`? */
function validOutput(path: string, kind: CommandCase['outputs'][number]['kind']): string | undefined {
  try {
    const st = lstatSync(path);
    switch (kind) {
      case 'json': JSON.parse(readFileSync(path, 'utf8')); return undefined;
      case 'prune': JSON.parse(readFileSync(join(path, 'summary.json'), 'utf8')); return undefined;
      case 'strip': JSON.parse(readFileSync(join(path, 'strip.json'), 'utf8')); return undefined;
      case 'report': JSON.parse(readFileSync(join(path, 'summary.json'), 'utf8')); return undefined;
      case 'compare': JSON.parse(readFileSync(join(path, 'comparison.json'), 'utf8')); return undefined;
      case 'model':
        if (st.isDirectory()) JSON.parse(readFileSync(join(path, 'model.json'), 'utf8'));
        else if (readFileSync(path).subarray(0, 4).toString('latin1') !== '\x89HDF') return 'not an HDF5 file';
        return undefined;
    }
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}

/** Run one case in its own folder under env.runs and check every invariant. */
export async function runCase(c: CommandCase, env: Env, timeoutMs = 120_000): Promise<CaseResult> {
  const t0 = performance.now();
  const run = join(env.runs, String(c.id));
  rmSync(run, { recursive: true, force: true });
  mkdirSync(run);
  writeFileSync(join(run, 'existing.json'), '"existing"\n');
  mkdirSync(join(run, 'existing-dir'));
  writeFileSync(join(run, 'existing-dir', 'keep'), 'keep\n');
  symlinkSync(join(run, 'nowhere'), join(run, 'dangling'));
  symlinkSync(join(env.inputs, 'm.h5'), join(run, 'link-to-model'));
  if (c.args[0] === 'report') cpSync(env.pruneOut, join(run, 'report-dir'), { recursive: true });
  const before = new Map(filesUnder(run).map((f) => [f, sha(f)]));
  const args = c.args.map((a) => resolveArg(a, env, run));
  const outcomes = await Promise.all((c.concurrent ? [0, 1] : [0]).map(() => runOnce(args, run, c.signal, timeoutMs)));
  const problems: string[] = [];
  for (const o of outcomes) {
    // Killed by the signal it was sent: SIGKILL always; SIGINT/SIGTERM when they land during
    // Node's start-up, before goodnet installs its handlers (nothing read or written yet; a
    // shell shows 130/143 for that too).
    const killed = o.signal !== null && o.signal === c.signal?.name;
    if (/\[fuzz: hang/.test(o.err)) problems.push('hang: still running at the time limit');
    else if (!killed && ![0, 2, 130, 143].includes(o.code ?? -1) && !(o.code === 1 && /^goodnet: internal error: /m.test(o.err))) {
      problems.push(`exit ${o.code ?? o.signal}`);
    }
    if (o.code === 2 || o.code === 1) {
      const errLines = o.err.split('\n').filter((l) => /^goodnet: (error|internal error): /.test(l));
      if (errLines.length !== 1) problems.push(`expected one error line, got ${errLines.length}: ${o.err.trim().slice(0, 300)}`);
    }
    if (/\n\s+at .*:\d+:\d+\)?\n/.test(o.err) && o.code !== 1) problems.push(`stack trace on stderr: ${o.err.slice(0, 200)}`);
    if (!(await noneAliveWithin(o.pid, 5000))) problems.push('a process of the run was alive 5 s after it exited');
  }
  if (c.concurrent && !c.force) {
    const zeros = outcomes.filter((o) => o.code === 0).length;
    const writes = c.outputs.some((o) => o.target === 'fresh');
    if (writes && zeros > 1) problems.push('two concurrent runs to one output both exited 0 without --force');
  }
  // Inputs unchanged.
  const now = hashInputs(env.inputs);
  for (const [f, h] of env.hashes) if (now.get(f) !== h) problems.push(`input changed: ${f}`);
  if (now.size !== env.hashes.size) problems.push(`inputs folder gained or lost files: ${[...now.keys()].filter((k) => !env.hashes.has(k)).join(', ')}`);
  // Pre-existing files of the run folder unchanged unless forced and successful.
  const forcedOk = c.force && outcomes.some((o) => o.code === 0);
  for (const [f, h] of before) {
    const isOutput = c.outputs.some((o) => resolveArg(o.path, env, run).replace(/\/$/, '') === f || f.startsWith(`${resolveArg(o.path, env, run)}/`));
    if (isOutput && (forcedOk || c.args[0] === 'report')) continue;
    if (!existsSync(f) || sha(f) !== h) problems.push(`existing file changed or removed: ${relative(run, f)}`);
  }
  // Outputs: complete under their final names, or absent.
  for (const o of c.outputs) {
    const path = resolveArg(o.path, env, run);
    if (o.target !== 'fresh' && o.target !== 'existing') continue; // the others must have been refused (inputs, links checked above)
    if (o.target === 'existing' && !forcedOk) continue;
    if (!existsSync(path)) {
      if (outcomes.every((x) => x.code === 0) && !c.concurrent && o.kind !== 'report') problems.push(`exit 0 but no output at ${o.path}`);
      continue;
    }
    const bad = validOutput(path, o.kind);
    if (bad) problems.push(`incomplete output under its final name ${o.path}: ${bad}`);
  }
  return { case: c, ok: problems.length === 0, problems, codes: outcomes.map((o) => o.code ?? o.signal ?? 'null'), seconds: (performance.now() - t0) / 1000 };
}

export interface CommandFuzzOptions {
  count?: number;
  seed?: number;
  /** Cases run at once (default 3). */
  parallel?: number;
  light?: boolean;
  saveDir?: string;
  log?: (line: string) => void;
}

/** Generate and run `count` cases; failing ones are saved as JSON under saveDir. */
export async function fuzzCommands(o: CommandFuzzOptions = {}): Promise<{ results: CaseResult[]; seconds: number; mounts: boolean }> {
  const t0 = performance.now();
  const rng = seedrandom(`commands-${o.seed ?? 0}`);
  const cases = Array.from({ length: o.count ?? 50 }, (_, i) => generateCase(rng, i, o.light));
  const env = await setUpEnv(!o.light);
  const results: CaseResult[] = [];
  try {
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const r = await runCase(c, env);
        results.push(r);
        if (!r.ok) {
          o.log?.(`case ${c.id} FAILED: goodnet ${c.args.join(' ')} -> ${r.codes.join(',')}: ${r.problems.join('; ')}`);
          if (o.saveDir) {
            mkdirSync(o.saveDir, { recursive: true });
            writeFileSync(join(o.saveDir, `command-${o.seed ?? 0}-${c.id}.json`), `${JSON.stringify({ ...c, problems: r.problems }, null, 2)}\n`);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: o.parallel ?? 3 }, worker));
    return { results: results.sort((a, b) => a.case.id - b.case.id), seconds: (performance.now() - t0) / 1000, mounts: env.readonly !== undefined };
  } finally {
    tearDownEnv(env);
  }
}

/** Replay kept cases (JSON files as fuzzCommands saves them). */
export async function replayCases(files: string[]): Promise<CaseResult[]> {
  const cases = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as CommandCase);
  const env = await setUpEnv(cases.some((c) => c.args[0] === 'report'));
  try {
    const out: CaseResult[] = [];
    for (const c of cases) out.push(await runCase(c, env));
    return out;
  } finally {
    tearDownEnv(env);
  }
}

