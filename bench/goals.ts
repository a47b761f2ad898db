/**
 * `npm run bench`: issue 14's speed goals, each next to its peer, in ONE table, side by side in
 * one run (the machine may be shared: the 1-minute load average is printed per row):
 *
 *   goodnet --help            median of 10 runs of `node bin/goodnet.js --help`; goal < 0.15 s
 *                             (peer: bare `node -e 0`, the floor of any Node CLI; CPU time
 *                             per run from bash's `times` over 10 more runs of each)
 *   training, images/s        the demo's DeepID (28x28x1 padded to 32x32, 10 classes), Adam,
 *                             batch 64, goodnet's own train loop on tfjs wasm (1 thread)
 *                             vs bench/train_peer_torch.py (PyTorch, 1 and 2 threads)
 *   inference, images/s       the lab's DeepID (55x47x3 -> 1283), batch 64, model.predict on wasm
 *                             vs bench/infer_peer_ort.py (onnxruntime CPU, 1 and 2 threads)
 *   demo, seconds             `goodnet demo` (only with --demo: it takes minutes); goal <= 360 s
 *   pruning sweep, seconds    issue 11: bench/prune_any.ts in a child process (MNIST-style net and
 *                             small ResNet, --sweep-n images per set, default 9,500) against the
 *                             PyTorch 1-thread peer in the same run; goal <= 0.5x its time. With
 *                             --prune-deepid also bench/prune_speed.ts (DeepID, minutes).
 *
 * Throughput is given per wall second and per CPU second of the process (user + system): on a
 * loaded machine wall time mostly measures the neighbours, CPU time less so. "peer best" is the
 * best peer configuration on each measure; ratio = goodnet / peer best (>= 1.0 meets the goal).
 * Writes the raw numbers to bench/results.json under "goals" (the rest of the file is kept).
 *
 *   npx tsc -p bench && node dist/bench/bench/goals.js [--train-batches N] [--infer-batches N] [--demo] [--sweep-n N] [--prune-deepid]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, tf } from '../src/engine/backend.js';
import { deepId } from '../src/models/deepid.js';
import { train } from '../src/models/train.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'goodnet.js');
const RESULTS = join(ROOT, 'bench', 'results.json');
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const TRAIN_BATCHES = arg('train-batches', 30);
const INFER_BATCHES = arg('infer-batches', 20);
const RUN_DEMO = process.argv.includes('--demo');
const BATCH = 64;

interface Rate { imagesPerSecond: number; imagesPerCpuSecond: number; engine: string; load: number }
interface Row {
  goal: string; target: string; unit: string;
  goodnet: Rate | { seconds: number; cpuSeconds?: number; engine: string; load: number } | undefined;
  peers: Rate[];
  met?: boolean;
}

/** Run f, returning its result and the mean 1-minute load average over the run. */
async function withLoad<T>(f: () => Promise<T> | T): Promise<{ value: T; load: number }> {
  const before = loadavg()[0]!;
  const value = await f();
  return { value, load: (before + loadavg()[0]!) / 2 };
}

async function timed(f: () => Promise<void>, images: number): Promise<{ imagesPerSecond: number; imagesPerCpuSecond: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await f();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { imagesPerSecond: images / wall, imagesPerCpuSecond: images / ((c.user + c.system) / 1e6) };
}

async function engineName(): Promise<string> {
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT').catch(() => false);
  return `tfjs ${tf.version_core} ${tf.getBackend()}${simd ? ' SIMD' : ''}, 1 thread`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function wallSeconds(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

/** CPU seconds (user + system) of one run of `node args`, from bash's `times` over `runs` runs. */
function cpuSecondsPerRun(args: string[], runs: number): number {
  const quoted = [process.execPath, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const out = execFileSync('bash', ['-c', `for i in $(seq ${runs}); do ${quoted} >/dev/null; done; times`], { cwd: ROOT, encoding: 'utf8' });
  // `times`: shell user/sys, then children's user/sys, as 0m0.123s.
  const secs = [...out.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return (secs[2]! + secs[3]!) / runs;
}

async function helpRow(): Promise<Row> {
  const help: number[] = [];
  const bare: number[] = [];
  const { value: cpu, load } = await withLoad(() => {
    for (let i = 0; i < 10; i++) { // alternate, so both see the same neighbours
      help.push(wallSeconds([BIN, '--help']));
      bare.push(wallSeconds(['-e', '0']));
    }
    return { help: cpuSecondsPerRun([BIN, '--help'], 10), bare: cpuSecondsPerRun(['-e', '0'], 10) };
  });
  const engine = `node ${process.version}`;
  return {
    goal: 'goodnet --help', target: '< 0.15 s', unit: 's',
    goodnet: { seconds: median(help), cpuSeconds: cpu.help, engine, load },
    peers: [{ imagesPerSecond: 1 / median(bare), imagesPerCpuSecond: 1 / cpu.bare, engine: 'node -e 0 (floor)', load }],
    met: median(help) < 0.15,
  };
}

function python(exe: string, script: string, args: string[]): Array<Record<string, number | string>> {
  try {
    const out = execFileSync(exe, [join(ROOT, 'bench', script), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, number | string>);
  } catch (err) {
    console.error(`peer ${script} unavailable: ${(err as Error).message.split('\n')[0]}`);
    return [];
  }
}

async function trainRow(): Promise<Row> {
  await initBackend('wasm');
  const shape: [number, number, number] = [28, 28, 1];
  const n = TRAIN_BATCHES * BATCH;
  const images = new Uint8Array(n * 784);
  for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  const set = { images, labels, n, shape };
  const net = deepId({ inputShape: shape, numClasses: 10, seed: 0 });
  await train(net, { ...set, n: 3 * BATCH }, { epochs: 1, batchSize: BATCH, scale: 255 }); // warm-up
  const g = await withLoad(() => timed(async () => {
    await train(net, set, { epochs: 1, batchSize: BATCH, scale: 255 });
  }, n));
  net.dispose();
  const peers: Rate[] = [];
  for (const threads of [1, 2]) {
    const p = await withLoad(() => python('/usr/bin/python3', 'train_peer_torch.py', ['--batches', String(TRAIN_BATCHES), '--threads', String(threads)]));
    for (const r of p.value) {
      peers.push({ imagesPerSecond: r.imagesPerSecond as number, imagesPerCpuSecond: r.imagesPerCpuSecond as number,
        engine: `PyTorch ${r.torch}, ${threads} thread${threads > 1 ? 's' : ''}`, load: p.load });
    }
  }
  return { goal: 'training (demo DeepID, Adam, batch 64)', target: '>= 1.0x PyTorch best', unit: 'img/s',
    goodnet: { ...g.value, engine: await engineName(), load: g.load }, peers };
}

async function inferRow(): Promise<Row> {
  await initBackend('wasm');
  const net = deepId({ inputShape: [55, 47, 3], numClasses: 1283, seed: 0 });
  const n = INFER_BATCHES * BATCH;
  const x = tf.randomUniform([n, 55, 47, 3], 0, 1, 'float32', 0);
  const warm = tf.slice(x, 0, 3 * BATCH);
  (net.predict(warm, { batchSize: BATCH }) as tf.Tensor).dispose();
  const g = await withLoad(() => timed(async () => {
    const y = net.predict(x, { batchSize: BATCH }) as tf.Tensor;
    await y.data();
    y.dispose();
  }, n));
  tf.dispose([x, warm]);
  net.dispose();
  const p = await withLoad(() => python('python3', 'infer_peer_ort.py', ['--batches', String(INFER_BATCHES), '--threads', '1', '2']));
  const peers = p.value.map((r) => ({ imagesPerSecond: r.imagesPerSecond as number, imagesPerCpuSecond: r.imagesPerCpuSecond as number,
    engine: `onnxruntime ${r.onnxruntime}, ${r.threads} thread${(r.threads as number) > 1 ? 's' : ''}`, load: p.load }));
  return { goal: 'inference (lab DeepID 55x47x3, batch 64)', target: '>= 1.0x onnxruntime best', unit: 'img/s',
    goodnet: { ...g.value, engine: await engineName(), load: g.load }, peers };
}

async function demoRow(): Promise<Row> {
  const row: Row = { goal: 'goodnet demo', target: '<= 360 s', unit: 's', goodnet: undefined, peers: [] };
  if (!RUN_DEMO) return row;
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-bench-demo-'));
  try {
    const r = await withLoad(() => wallSeconds([BIN, 'demo', '--out', join(dir, 'demo')]));
    row.goodnet = { seconds: r.value, engine: 'goodnet demo (wasm)', load: r.load };
    row.met = r.value <= 360;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return row;
}

/** Issue 11's sweep rows: goodnet's sweep time vs the PyTorch peer's, both from one child run. */
async function sweepRows(): Promise<Row[]> {
  const bench = (script: string, args: string[]) => withLoad(() => spawnSync(process.execPath, [join(ROOT, 'dist', 'bench', 'bench', script), ...args], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] }).status);
  const row = (goal: string, seconds: number, peer: number | undefined, engine: string, peerEngine: string, load: number, cpu?: number, peerCpu?: number): Row => ({
    goal, target: '<= 0.5x PyTorch time (ratio >= 2.00x)', unit: 's', goodnet: { seconds, cpuSeconds: cpu, engine, load },
    peers: peer === undefined ? [] : [{ imagesPerSecond: 1 / peer, imagesPerCpuSecond: peerCpu === undefined ? NaN : 1 / peerCpu, engine: peerEngine, load }],
    met: peer === undefined ? undefined : seconds <= 0.5 * peer,
  });
  const rows: Row[] = [];
  const r = await bench('prune_any.js', ['--n', String(arg('sweep-n', 9500))]);
  const any = JSON.parse(readFileSync(join(ROOT, 'bench', 'results_any.json'), 'utf8')) as { rows: Array<{ name: string; goodnetSweep: number; goodnetSweepCpu?: number; torch?: number; torchCpu?: number; kind: string; equal: boolean }> };
  for (const x of any.rows) {
    const what = x.name === 'mnist' ? 'MNIST-style Conv-AvgPool-Dense' : 'small ResNet, GAP';
    rows.push(row(`pruning sweep (${what}, ${x.kind} kind${x.equal ? '' : ', NOT EQUAL'})`, x.goodnetSweep, x.torch, 'goodnet prune sweep, 1 thread', 'PyTorch 1 thread (bench/peer_torch.py --cut-file)', r.load, x.goodnetSweepCpu, x.torchCpu));
  }
  if (process.argv.includes('--prune-deepid')) {
    const d = await bench('prune_speed.js', []);
    const res = JSON.parse(readFileSync(RESULTS, 'utf8')) as { table: Array<{ seconds: number }>; torch?: { sweep_s: number; threads: number } };
    rows.push(row('pruning sweep (DeepID, lab3 weights)', res.table[0]!.seconds, res.torch?.sweep_s, 'goodnet prune sweep, 2 workers', `PyTorch ${res.torch?.threads ?? '?'} threads`, d.load));
  }
  return rows;
}

const f0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');

function printTable(rows: Row[]): void {
  console.log('| goal | target | goodnet | peer best | ratio (wall) | ratio (CPU time) | met | load | engines |');
  console.log('|:--|:--|--:|--:|--:|--:|:-:|--:|:--|');
  for (const r of rows) {
    const g = r.goodnet;
    if (g === undefined) {
      console.log(`| ${r.goal} | ${r.target} | not run${r.goal === 'goodnet demo' ? ' (--demo)' : ''} | - | - | - | - | - | - |`);
      continue;
    }
    if ('seconds' in g) {
      const peer = r.peers[0];
      const peerS = peer ? 1 / peer.imagesPerSecond : NaN;
      const peerCpu = peer ? 1 / peer.imagesPerCpuSecond : NaN;
      const cpu = g.cpuSeconds;
      console.log(`| ${r.goal} | ${r.target} | ${g.seconds.toFixed(3)} s${cpu !== undefined ? ` (${cpu.toFixed(3)} CPU s)` : ''} | ` +
        `${peer ? `${peerS.toFixed(3)} s${Number.isFinite(peerCpu) ? ` (${peerCpu.toFixed(3)} CPU s)` : ''}` : '-'} | ${peer ? ratio(peerS, g.seconds) : '-'} | ` +
        `${peer && cpu !== undefined ? ratio(peerCpu, cpu) : '-'} | ${r.met ? 'yes' : 'no'} | ${g.load.toFixed(1)} | ${g.engine}${peer ? `; peer ${peer.engine}` : ''} |`);
      continue;
    }
    const bestWall = r.peers.reduce<Rate | undefined>((b, p) => (b === undefined || p.imagesPerSecond > b.imagesPerSecond ? p : b), undefined);
    const bestCpu = r.peers.reduce<Rate | undefined>((b, p) => (b === undefined || p.imagesPerCpuSecond > b.imagesPerCpuSecond ? p : b), undefined);
    const rw = bestWall ? g.imagesPerSecond / bestWall.imagesPerSecond : NaN;
    r.met = Number.isFinite(rw) ? rw >= 1 : undefined;
    const load = [g.load, ...r.peers.map((p) => p.load)].map((l) => l.toFixed(1)).join('/');
    console.log(`| ${r.goal} | ${r.target} | ${f0(g.imagesPerSecond)} img/s (${f0(g.imagesPerCpuSecond)} per CPU s) | ` +
      `${bestWall ? f0(bestWall.imagesPerSecond) : '-'} img/s (${bestCpu ? f0(bestCpu.imagesPerCpuSecond) : '-'} per CPU s) | ` +
      `${bestWall ? ratio(g.imagesPerSecond, bestWall.imagesPerSecond) : '-'} | ${bestCpu ? ratio(g.imagesPerCpuSecond, bestCpu.imagesPerCpuSecond) : '-'} | ` +
      `${r.met === undefined ? '-' : r.met ? 'yes' : 'no'} | ${load} | ${g.engine}; peers: ${r.peers.map((p) => `${p.engine} ${f0(p.imagesPerSecond)} img/s`).join(', ')} |`);
  }
}

const rows = [await helpRow(), await trainRow(), await inferRow(), await demoRow(), ...await sweepRows()];
console.log(`\nissue 14 goals, ${new Date().toISOString()}, load average now ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
printTable(rows);
const previous = existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, 'utf8')) as Record<string, unknown> : {};
writeFileSync(RESULTS, `${JSON.stringify({ ...previous, goals: { date: new Date().toISOString(), rows } }, null, 2)}\n`);
