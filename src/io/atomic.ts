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
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { GoodnetError } from '../errors.js';
import { checkOutputPath, lexists, writeErrorToGoodnet, type OutputCheck } from './paths.js';

export interface AtomicOptions extends OutputCheck {
  /** Replace an existing output (default: refuse). */
  overwrite?: boolean;
}

let counter = 0;

/** A sibling temp path for `path`, e.g. `dir/.bd_net.h5.tmp-1234-1`. */
export function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${++counter}`);
}

/**
 * Throw early (before long work) when `path` may not be written: it exists and may not be
 * replaced, it is, contains or lies inside an input (`options.inputs`), it is a link, the
 * current folder, unwritable, or on a file system without room (see src/io/paths.ts).
 */
export function checkWritable(path: string, options: AtomicOptions = {}): void {
  recoverInterrupted(path);
  checkOutputPath(path, options);
}

/** Whether process `pid` exists (EPERM: it does, someone else's). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Undo what a run killed outright (SIGKILL, a crash: no handler runs) left beside `path`.
 * A --force replacement of a folder renames the old output aside (`.NAME.old-PID-N`), then
 * renames the new one onto the freed name; POSIX has no atomic swap of two folders, so a
 * kill between those two renames leaves nothing under the name. When `path` is missing and
 * exactly one aside copy of a dead process is there, it is put back (the old output,
 * complete); when `path` exists, aside copies of dead processes are stale (a run killed
 * while deleting its old output) and are removed. Entries of live processes are never
 * touched. Every goodnet output check (`checkWritable`) runs this first.
 */
export function recoverInterrupted(path: string): { restored?: string; removed: string[] } {
  const dir = dirname(resolve(path));
  const prefix = `.${basename(path)}.old-`;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(prefix));
  } catch {
    return { removed: [] };
  }
  const dead = names.filter((n) => {
    const m = /^(\d+)-\d+$/.exec(n.slice(prefix.length));
    return m !== null && !processAlive(Number(m[1]));
  }).map((n) => join(dir, n));
  if (dead.length === 0) return { removed: [] };
  try {
    if (!lexists(path)) {
      if (dead.length !== 1) return { removed: [] }; // several candidates: do not guess
      renameSync(dead[0]!, path);
      process.stderr.write(`goodnet: note: ${path}: put back the previous output from ${basename(dead[0]!)} (a run replacing it was killed)\n`);
      return { restored: dead[0]!, removed: [] };
    }
    for (const a of dead) rmSync(a, { recursive: true, force: true });
    return { removed: dead };
  } catch {
    return { removed: [] }; // best effort: the output check that follows reports real problems
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


const raced = (path: string) =>
  new GoodnetError('appeared while this run was writing it (another run to the same output?); it was left as it is and nothing was written', path);

/**
 * Move the complete temp output `tmp` to `path`, never replacing anything: a file is
 * hard-linked (atomic, fails if `path` exists), a folder is renamed onto an empty folder
 * this call creates exclusively.
 */
function placeExclusively(tmp: string, path: string): void {
  if (statSync(tmp).isDirectory()) {
    try {
      mkdirSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw raced(path);
      throw err;
    }
    try {
      renameSync(tmp, path); // onto the empty folder just made
    } catch (err) {
      rmSync(path, { recursive: false, force: true });
      throw err;
    }
    return;
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw raced(path);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw err;
    // File systems without hard links: check, then rename (a narrow race remains there).
    if (lexists(path)) throw raced(path);
    renameSync(tmp, path);
    return;
  }
  unlinkSync(tmp);
}

/** A sibling name an old output is moved to before it is deleted, e.g. `dir/.out.old-1234-2`. */
export function asideSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.old-${process.pid}-${++counter}`);
}

/**
 * Run `write(tmp)` to produce `path` (a file or a folder) under a temp name, then move it
 * into place. Without `overwrite` the move never replaces anything (a second run to the
 * same output gets a GoodnetError, not a silent delete). With `overwrite` a file replaces
 * the old file in one atomic rename; a folder's old output is first renamed aside, the new
 * one renamed onto the freed name, and only then is the old one deleted. A run killed at
 * any moment leaves the old or the new output under `path`, complete, except between a
 * folder's two renames, where the old one is left complete aside and the next output check
 * to `path` (`checkWritable`, `recoverInterrupted`) puts it back.
 * On any error (or SIGINT/SIGTERM) the temp output is removed and `path` is untouched.
 */
export async function writeAtomically(
  path: string,
  write: (tmp: string) => Promise<void> | void,
  options: AtomicOptions = {},
): Promise<void> {
  checkWritable(path, options);
  let made: string | undefined;
  try {
    made = mkdirSync(dirname(resolve(path)), { recursive: true });
  } catch (err) {
    throw writeErrorToGoodnet(err, path);
  }
  const tmp = tempSibling(path);
  const release = trackPartial(tmp);
  try {
    await write(tmp);
    const tmpIsFolder = statSync(tmp).isDirectory();
    if (options.overwrite && lexists(path) && !tmpIsFolder && !lstatSync(path).isDirectory()) {
      renameSync(tmp, path); // a file over a file: one atomic rename, old or new at every moment
    } else if (options.overwrite && lexists(path)) {
      const aside = asideSibling(path);
      renameSync(path, aside);
      try {
        // A folder: the name was freed by the rename above, so the new one goes straight onto
        // it; a kill between these two renames leaves the old one aside, and the next output
        // check to this path puts it back (recoverInterrupted).
        if (tmpIsFolder) renameSync(tmp, path);
        else placeExclusively(tmp, path);
      } catch (err) {
        if (!lexists(path)) renameSync(aside, path); // put the old one back
        throw err;
      }
      rmSync(aside, { recursive: true, force: true });
    } else {
      placeExclusively(tmp, path);
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (made !== undefined) rmSync(made, { recursive: true, force: true });
    throw writeErrorToGoodnet(err, path);
  } finally {
    release();
  }
}
