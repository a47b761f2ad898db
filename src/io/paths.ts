/**
 * Output paths checked against the inputs before any work starts: an output may not be,
 * contain or lie inside anything the run reads, may not be the current folder (or one
 * above it), a symbolic link or an empty name, and must be on a writable file system with
 * room for a first estimate of its size. Every command calls `checkOutputPath` for each
 * output (through `checkWritable`), so the rules live here once.
 */
import { accessSync, constants, existsSync, lstatSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { GoodnetError } from '../errors.js';

export interface OutputCheck {
  /** The output is a folder (true), a file (false), or either (undefined: a model, by its name). */
  folder?: boolean;
  /** Replace an existing output (--force). */
  overwrite?: boolean;
  /** Everything the run reads: files or folders. A tfjs `model.json` counts as its folder. */
  inputs?: readonly (string | undefined)[];
  /** Other outputs of the same run (they must not overlap either). */
  others?: readonly (string | undefined)[];
  /** A first estimate of the bytes the output needs (refused when the file system has less free). */
  estimateBytes?: number;
}

/** `path` with every existing prefix resolved through symbolic links (works for paths that do not exist yet). */
export function realPathOf(path: string): string {
  const abs = resolve(path);
  const rest: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    try {
      return join(realpathSync(p), ...rest.reverse());
    } catch {
      if (dirname(p) === p) return abs;
      rest.push(basename(p));
    }
  }
}

/** Whether anything (a file, a folder, even a dangling link) is at `path`. */
export function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

const inside = (child: string, parent: string) => child !== parent && child.startsWith(parent.endsWith(sep) ? parent : parent + sep);


/** The nearest existing ancestor folder of `path` (the folder the output will be created in). */
export function existingAncestor(path: string): string {
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    if (existsSync(dir)) return dir;
    if (dirname(dir) === dir) return dir;
  }
}

/** The inputs as the real paths they occupy (a tfjs model.json stands for its folder). */
function inputRoots(inputs: readonly (string | undefined)[]): { given: string; real: string }[] {
  const out: { given: string; real: string }[] = [];
  for (const given of inputs) {
    if (given === undefined || given === '') continue;
    const real = realPathOf(given);
    out.push({ given, real });
    if (basename(real) === 'model.json') out.push({ given, real: dirname(real) });
  }
  return out;
}

/**
 * Throw a GoodnetError naming `path` when it may not be written by this run. Cheap: no
 * byte of any input is read. Called before long work starts.
 */
export function checkOutputPath(path: string, o: OutputCheck = {}): void {
  if (path.trim() === '') throw new GoodnetError('an output path may not be empty', "''");
  if (o.folder === false && /[\\/]$/.test(path)) throw new GoodnetError('ends with a slash: give a file name, not a folder', path);
  let st;
  try {
    st = lstatSync(path);
  } catch {
    st = undefined;
  }
  if (st?.isSymbolicLink()) throw new GoodnetError('is a symbolic link; goodnet does not write through or over links, give the real path', path);
  if (st && !st.isFile() && !st.isDirectory()) throw new GoodnetError('exists and is not a regular file or folder', path);
  if (st && o.folder && !st.isDirectory()) throw new GoodnetError('is an existing file, not a folder; choose another output folder', path);
  if (st && o.folder === false && st.isDirectory()) throw new GoodnetError('is an existing folder; give a file name', path);
  if (st && !o.overwrite) throw new GoodnetError('already exists (use --force to overwrite)', path);

  const real = realPathOf(path);
  const cwd = realPathOf(process.cwd());
  if (real === cwd || inside(cwd, real)) throw new GoodnetError('is the current folder or contains it; choose a new output path', path);
  for (const { given, real: r } of inputRoots(o.inputs ?? [])) {
    if (r === real) throw new GoodnetError(`is also an input of this run (${given}); inputs are never written`, path);
    if (inside(r, real)) throw new GoodnetError(`contains the input ${given}; inputs are never written or deleted`, path);
    if (inside(real, r)) throw new GoodnetError(`lies inside the input ${given}; write outputs outside the inputs`, path);
  }
  for (const other of o.others ?? []) {
    if (other === undefined || other === '') continue;
    const r = realPathOf(other);
    if (r === real || inside(r, real) || inside(real, r)) throw new GoodnetError(`overlaps the other output ${other}`, path);
  }

  // The folder the output is created in must be a folder, writable, with room.
  const dir = existingAncestor(path);
  if (!statSync(dir).isDirectory()) throw new GoodnetError(`cannot create the output: ${dir} is a file, not a folder`, path);
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new GoodnetError(`cannot write in ${dir} (${code === 'EROFS' ? 'read-only file system' : 'permission denied'})`, path);
  }
  if (o.estimateBytes !== undefined && o.estimateBytes > 0) {
    let free: number | undefined;
    try {
      const fs = statfsSync(dir);
      free = Number(fs.bavail) * Number(fs.bsize);
    } catch {
      free = undefined;
    }
    if (free !== undefined && free < o.estimateBytes) {
      throw new GoodnetError(`only ${mib(free)} free on that file system; the output needs about ${mib(o.estimateBytes)}`, path);
    }
  }
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(b < 2 ** 20 ? 2 : 0)} MiB`;

/** Bytes a path holds (a file's size, a folder's files summed), for output estimates. */
export function bytesOf(path: string | undefined): number {
  if (path === undefined || !lexists(path)) return 0;
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}

/** Errors of the file system while writing an output, as the one-line bad-input error. */
export function writeErrorToGoodnet(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why: Record<string, string> = {
    ENOSPC: 'no space left on the file system', EDQUOT: 'disk quota exceeded', EROFS: 'read-only file system',
    EACCES: 'permission denied', EPERM: 'operation not permitted', ENOTDIR: 'a part of the path is not a folder',
    ENAMETOOLONG: 'the name is too long', EISDIR: 'is a folder',
  };
  if (code && why[code]) return new GoodnetError(`cannot write the output: ${why[code]}; nothing was written`, path, { cause: err });
  return err;
}
