/**
 * The fuzzing harness: seeds -> mutants -> child processes with a per-mutant time limit
 * and a memory cap. A mutant passes when it loads or fails with a one-line GoodnetError
 * naming the file; anything else (uncaught exception, crash, hang, memory past the cap)
 * is a failure, and the mutant is kept.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import type { Job, JobResult } from './child.js';
import { mutate } from './mutate.js';
import { makeSeeds, type TargetKind } from './seeds.js';

const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

export interface RunLimits {
  /** Seconds one mutant may take (default 20). */
  timeoutS?: number;
  /** Resident memory cap of a child, MiB (default 1536); V8's heap is capped below it. */
  memoryMiB?: number;
}

export interface Failure { job: Job; status: 'bug' | 'hang' | 'crash' | 'memory'; message: string }

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Run jobs in child processes; returns one result per job (index-aligned). */
export async function runJobs(jobs: Job[], limits: RunLimits = {}): Promise<(JobResult | Failure)[]> {
  const timeoutMs = (limits.timeoutS ?? 20) * 1000;
  const capMiB = limits.memoryMiB ?? 1536;
  const results: (JobResult | Failure)[] = new Array(jobs.length);
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-fuzz-jobs-'));
  const jobsFile = join(dir, 'jobs.json');
  writeFileSync(jobsFile, JSON.stringify(jobs));
  try {
    let next = 0;
    while (next < jobs.length) {
      next = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, [`--max-old-space-size=${Math.floor(capMiB / 2)}`, CHILD, jobsFile, String(next)], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let current = next;
        let started = false;
        let killedFor: Failure['status'] | undefined;
        let stderr = '';
        let buf = '';
        let deadline = Date.now() + timeoutMs + 15000; // first job also pays for start-up
        const timer = setInterval(() => {
          if (killedFor) return;
          if (Date.now() > deadline) killedFor = 'hang';
          else if (child.pid && rssMiB(child.pid) > capMiB) killedFor = 'memory';
          if (killedFor) child.kill('SIGKILL');
        }, 100);
        child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line.startsWith('START ')) {
              current = Number(line.slice(6));
              started = true;
              deadline = Date.now() + timeoutMs;
            } else if (line.startsWith('{')) {
              const r = JSON.parse(line) as JobResult;
              results[r.i] = r;
              current = r.i + 1;
              started = false;
            }
          }
        });
        child.on('close', (code, signal) => {
          clearInterval(timer);
          if (current >= jobs.length) return resolve(jobs.length);
          const status: Failure['status'] = killedFor ?? 'crash';
          const message = killedFor === 'hang' ? `no result within ${timeoutMs / 1000} s`
            : killedFor === 'memory' ? `resident memory above ${capMiB} MiB`
            : `child exited (code ${code}, signal ${signal})${started ? '' : ' before starting'}: ${stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 400)}`;
          results[current] = { job: jobs[current]!, status, message };
          resolve(current + 1);
        });
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

export function isFailure(r: JobResult | Failure): r is Failure | (JobResult & { status: 'bug' }) {
  return r.status !== 'ok' && r.status !== 'error';
}

export interface FuzzOptions extends RunLimits {
  seed?: number;
  count?: number;
  seconds?: number;
  /** Keep failing mutants here (default: report only). */
  saveDir?: string;
  /** Mutants per child process batch. */
  batch?: number;
  log?: (line: string) => void;
}

export interface FuzzSummary {
  mutants: number;
  ok: number;
  errors: number;
  failures: { file?: string; kind: TargetKind; how?: string; status: string; message: string }[];
  byKind: Record<string, number>;
  seconds: number;
}

/** Weights of seeds in the mix (the deepid weights file is big and slow: fewer of it). */
const SEED_WEIGHT: Record<string, number> = { 'model.h5': 5, 'functional.h5': 4, 'functional.keras': 4, tfjs: 5, 'weights.h5': 1, 'data.h5': 5, 'data-gzip.h5': 3, imgs: 3, 'image.png': 3, 'image.jpg': 3, 'trigger.png': 3 };

export async function fuzz(options: FuzzOptions = {}): Promise<FuzzSummary> {
  const t0 = Date.now();
  const log = options.log ?? (() => {});
  const count = options.count ?? (options.seconds === undefined ? 1000 : Infinity);
  const endAt = options.seconds === undefined ? Infinity : t0 + options.seconds * 1000;
  const seedValue = options.seed ?? 1;
  const rng = seedrandom(String(seedValue));
  const work = mkdtempSync(join(tmpdir(), 'goodnet-fuzz-'));
  const summary: FuzzSummary = { mutants: 0, ok: 0, errors: 0, failures: [], byKind: {}, seconds: 0 };
  try {
    const seeds = await makeSeeds(join(work, 'seeds'));
    // The seeds themselves must load.
    const seedResults = await runJobs(seeds.map((s) => ({ kind: s.kind, path: s.path })), options);
    seedResults.forEach((r, i) => {
      if (r.status !== 'ok') throw new Error(`seed ${seeds[i]!.path} does not load: ${r.message}`);
    });
    const bag = seeds.flatMap((s) => Array<typeof s>(SEED_WEIGHT[basename(s.path)] ?? 1).fill(s));
    const batch = options.batch ?? 200;
    let n = 0;
    while (n < count && Date.now() < endAt) {
      const dir = join(work, `batch-${n}`);
      mkdirSync(dir);
      const jobs: Job[] = [];
      for (let k = 0; k < batch && n + k < count; k++) {
        const s = bag[Math.floor(rng() * bag.length)]!;
        const name = `${s.kind}-${seedValue}-${n + k}-${basename(s.path)}`;
        const out = join(dir, name);
        const how = await mutate(rng, s, out);
        jobs.push({ kind: s.kind, path: out, how });
      }
      const results = await runJobs(jobs, options);
      results.forEach((r, i) => {
        const job = jobs[i]!;
        summary.mutants++;
        summary.byKind[job.kind] = (summary.byKind[job.kind] ?? 0) + 1;
        if (r.status === 'ok') summary.ok++;
        else if (r.status === 'error') summary.errors++;
        else {
          let file: string | undefined;
          if (options.saveDir) {
            mkdirSync(options.saveDir, { recursive: true });
            file = join(options.saveDir, basename(job.path));
            if (!existsSync(file)) cpSync(job.path, file, { recursive: true });
          }
          summary.failures.push({ file, kind: job.kind, how: job.how, status: r.status, message: r.message });
          log(`FAIL ${r.status} ${job.kind} ${basename(job.path)} [${job.how}]: ${r.message}`);
        }
      });
      n += jobs.length;
      rmSync(dir, { recursive: true, force: true });
      log(`${n} mutants, ${summary.failures.length} failures, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  summary.seconds = (Date.now() - t0) / 1000;
  return summary;
}

/** Kind of a kept fixture from its file name (`<kind>-...`). */
export function fixtureJobs(dir: string): Job[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^(model|weights|data|image|trigger)-/.test(f)).sort()
    .map((f) => ({ kind: f.split('-')[0] as TargetKind, path: join(dir, f) }));
}
