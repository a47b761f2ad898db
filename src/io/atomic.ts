/**
 * Atomic outputs: everything is written under a temporary name in the destination's own
 * directory and renamed into place only when complete, so an interrupted run never leaves
 * a half-written file, and an existing output is replaced only when asked to.
 *
 * Temp paths being written are registered; SIGINT or SIGTERM while any is registered
 * removes them all and exits (130 for SIGINT, 143 for SIGTERM). The signal handlers are
 * installed only while something is being written, so library users keep Node's defaults
 * the rest of the time.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { GoodnetError } from '../errors.js';

export interface AtomicOptions {
  /** Replace an existing output (default: refuse). */
  overwrite?: boolean;
  /** The output is a folder: an existing regular file there is never replaced, even with overwrite. */
  folder?: boolean;
}

let counter = 0;

/** A sibling temp path for `path`, e.g. `dir/.bd_net.h5.tmp-1234-1`. */
export function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${++counter}`);
}

/** Throw early (before long work) when `path` exists and may not be replaced. */
export function checkWritable(path: string, options: AtomicOptions = {}): void {
  if (existsSync(path)) {
    if (options.folder && !statSync(path).isDirectory()) {
      throw new GoodnetError('is an existing file, not a folder; choose another output folder', path);
    }
    if (!options.overwrite) throw new GoodnetError('already exists (use --force to overwrite)', path);
    return;
  }
  // The nearest existing ancestor must be a folder, or the output could never be created.
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if (existsSync(dir)) {
      if (!statSync(dir).isDirectory()) throw new GoodnetError(`cannot create the output: ${dir} is a file, not a folder`, path);
      return;
    }
    if (dirname(dir) === dir) return;
  }
}

// ---------------------------------------------------------------------------------------
// Partial outputs removed on interrupt

const partial = new Set<string>();
const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

function onSignal(signal: keyof typeof EXIT_CODES): void {
  const removed = removePartialOutputs();
  process.stderr.write(`\ngoodnet: interrupted (${signal})${removed ? `; removed ${removed} partial output${removed > 1 ? 's' : ''}` : ''}\n`);
  process.exit(EXIT_CODES[signal]);
}
const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
let permanent = false;

/**
 * Keep the handlers for the whole process (the CLI does): SIGINT/SIGTERM then always exit
 * with 130/143, after removing whatever partial outputs are registered at that moment.
 */
export function exitOnInterrupt(): void {
  if (!permanent && partial.size === 0) {
    process.on('SIGINT', handlers.SIGINT);
    process.on('SIGTERM', handlers.SIGTERM);
  }
  permanent = true;
}

/**
 * Mark `path` (a temp file or folder, or an output folder being filled in place) as
 * partial: it is removed if the process is interrupted before `release()` is called.
 */
export function trackPartial(path: string): () => void {
  if (partial.size === 0 && !permanent) {
    process.on('SIGINT', handlers.SIGINT);
    process.on('SIGTERM', handlers.SIGTERM);
  }
  partial.add(path);
  return () => {
    if (!partial.delete(path) || partial.size > 0 || permanent) return;
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
  };
}

/** Remove every registered partial output now (what the signal handlers do); returns how many. */
export function removePartialOutputs(): number {
  let n = 0;
  for (const p of partial) {
    try {
      if (existsSync(p)) n++;
      rmSync(p, { recursive: true, force: true });
    } catch {
      /* best effort while exiting */
    }
  }
  partial.clear();
  return n;
}

/**
 * Let the event loop run (signal handlers included). Long loops whose awaits resolve as
 * microtasks (training, batched reads, the pruning sweep) call this once per step, so that
 * Ctrl-C is handled within a step rather than when the loop ends.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Paths currently registered as partial (for tests). */
export function partialOutputs(): string[] {
  return [...partial];
}

/**
 * Run `write(tmp)` to produce `path` (a file or a folder) under a temp name, then rename.
 * On any error (or SIGINT/SIGTERM) the temp output is removed and `path` is untouched.
 */
export async function writeAtomically(
  path: string,
  write: (tmp: string) => Promise<void> | void,
  options: AtomicOptions = {},
): Promise<void> {
  checkWritable(path, options);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempSibling(path);
  const release = trackPartial(tmp);
  try {
    await write(tmp);
    if (existsSync(path)) rmSync(path, { recursive: true, force: true });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    release();
  }
}
