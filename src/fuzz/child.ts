/**
 * Fuzz runner child: `node child.js JOBS.json START`. Feeds each job's file to its loader
 * and prints one JSON line per job: ok, a proper GoodnetError, or a bug. The parent
 * enforces the time limit and the memory cap and restarts this process after a crash.
 */
import { readFileSync } from 'node:fs';
import { initBackend } from '../engine/backend.js';
import { GoodnetError } from '../errors.js';
import { openDataset } from '../io/dataset.js';
import { decodeImage } from '../io/images.js';
import { loadModel } from '../io/model.js';
import '../models/index.js'; // weights-only Keras seeds load into the registered architectures
import { createTrigger } from '../attack/triggers.js';
import * as tf from '@tensorflow/tfjs-core';
import type { TargetKind } from './seeds.js';

export interface Job { kind: TargetKind; path: string; how?: string }
export interface JobResult { i: number; status: 'ok' | 'error' | 'bug'; message: string }

/** Rows read at most from one data set (declared sizes may be huge; reads are batched). */
const MAX_ROWS = 4096;

export async function runTarget(job: Job): Promise<void> {
  switch (job.kind) {
    case 'model':
    case 'weights': {
      const m = await loadModel(job.path, job.kind === 'weights' ? { arch: 'deepid' } : {});
      m.net.dispose();
      return;
    }
    case 'data': {
      const ds = await openDataset(job.path);
      try {
        let rows = 0;
        for await (const b of ds.batches(64)) {
          rows += b.n;
          if (rows >= MAX_ROWS) break;
        }
      } finally {
        ds.close();
      }
      return;
    }
    case 'image': decodeImage(job.path); return;
    case 'trigger': {
      // Read it, then stamp it where it fits (a trigger larger than the image is a GoodnetError).
      const t = createTrigger({ kind: 'image', image: job.path });
      for (const [h, w, c] of [[8, 8, 3], [28, 28, 1]] as const) t.apply(new Uint8Array(2 * h * w * c), 2, h, w, c);
      return;
    }
  }
}

/** Classify what a target did: only "loaded" and a one-line GoodnetError naming the file are fine. */
export async function classify(job: Job, i: number): Promise<JobResult> {
  try {
    await runTarget(job);
    return { i, status: 'ok', message: '' };
  } catch (err) {
    if (err instanceof GoodnetError) {
      const msg = err.message;
      if (/[\r\n]/.test(msg)) return { i, status: 'bug', message: `multi-line GoodnetError: ${JSON.stringify(msg.slice(0, 300))}` };
      if (!msg.includes(job.path)) return { i, status: 'bug', message: `GoodnetError does not name the file: ${msg.slice(0, 300)}` };
      return { i, status: 'error', message: msg.slice(0, 300) };
    }
    const e = err as Error;
    return { i, status: 'bug', message: `uncaught ${e?.name ?? typeof err}: ${String(e?.message ?? err).split('\n')[0]!.slice(0, 300)} @ ${String(e?.stack ?? '').split('\n').slice(1, 3).map((s) => s.trim()).join(' | ')}` };
  } finally {
    tf.disposeVariables();
  }
}

async function main(): Promise<void> {
  const [jobsFile, startText] = process.argv.slice(2);
  const jobs = JSON.parse(readFileSync(jobsFile!, 'utf8')) as Job[];
  await initBackend('cpu');
  for (let i = Number(startText ?? 0); i < jobs.length; i++) {
    process.stdout.write(`START ${i}\n`);
    const r = await classify(jobs[i]!, i);
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  main().catch((err) => {
    process.stderr.write(`fuzz child: ${String((err as Error)?.stack ?? err)}\n`);
    process.exit(3);
  });
}
