/**
 * Atomic outputs: everything is written under a temporary name in the destination's own
 * directory and renamed into place only when complete, so an interrupted run never leaves
 * a half-written file, and an existing output is replaced only when asked to.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { GoodnetError } from '../errors.js';

export interface AtomicOptions {
  /** Replace an existing output (default: refuse). */
  overwrite?: boolean;
}

let counter = 0;

/** A sibling temp path for `path`, e.g. `dir/.bd_net.h5.tmp-1234-1`. */
export function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${++counter}`);
}

/** Throw early (before long work) when `path` exists and may not be replaced. */
export function checkWritable(path: string, options: AtomicOptions = {}): void {
  if (existsSync(path) && !options.overwrite) {
    throw new GoodnetError('already exists (use --force to overwrite)', path);
  }
}

/**
 * Run `write(tmp)` to produce `path` (a file or a folder) under a temp name, then rename.
 * On any error the temp output is removed and `path` is untouched.
 */
export async function writeAtomically(
  path: string,
  write: (tmp: string) => Promise<void> | void,
  options: AtomicOptions = {},
): Promise<void> {
  checkWritable(path, options);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempSibling(path);
  try {
    await write(tmp);
    if (existsSync(path)) rmSync(path, { recursive: true, force: true });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
