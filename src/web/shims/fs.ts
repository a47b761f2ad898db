/**
 * `node:fs` for the web bundle: the synchronous calls goodnet's readers and writers make, served
 * by h5wasm's in-memory Emscripten file system (MEMFS), the same one h5wasm opens HDF5 files in.
 * The page's worker copies the user's files into it (under /in) and reads results back (from /out),
 * so the library's path-based code runs unchanged. Only what goodnet uses is here.
 */
import * as h5 from 'h5wasm';

type EmFs = NonNullable<typeof h5.FS> & Record<string, any>;

function fs(): EmFs {
  if (!h5.FS) throw new Error('file system not ready: await h5wasm ready first');
  return h5.FS as EmFs;
}

const CODES: Record<number, string> = { 2: 'ENOENT', 44: 'ENOENT', 20: 'EEXIST', 17: 'EEXIST', 54: 'ENOTDIR', 31: 'EISDIR', 55: 'ENOTEMPTY', 28: 'EINVAL', 63: 'EACCES', 8: 'EBADF' };

class FsError extends Error {
  constructor(readonly code: string, syscall: string, path: string) {
    super(`${code}: ${syscall} '${path}'`);
  }
}

function wrap<T>(syscall: string, path: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    const errno = (err as { errno?: number }).errno;
    if (errno !== undefined) throw new FsError(CODES[errno] ?? `E${errno}`, syscall, path);
    throw err;
  }
}

export class Stats {
  constructor(private readonly s: { mode: number; size: number; mtime?: Date; ino?: number; dev?: number; nlink?: number }) {}
  get size(): number { return this.s.size; }
  get mode(): number { return this.s.mode; }
  get mtime(): Date { return this.s.mtime ?? new Date(0); }
  get mtimeMs(): number { return this.mtime.getTime(); }
  get ino(): number { return this.s.ino ?? 0; }
  get dev(): number { return this.s.dev ?? 0; }
  get nlink(): number { return this.s.nlink ?? 1; }
  isDirectory(): boolean { return (this.s.mode & 0o170000) === 0o040000; }
  isFile(): boolean { return (this.s.mode & 0o170000) === 0o100000; }
  isSymbolicLink(): boolean { return (this.s.mode & 0o170000) === 0o120000; }
  isFIFO(): boolean { return false; }
  isSocket(): boolean { return false; }
  isBlockDevice(): boolean { return false; }
  isCharacterDevice(): boolean { return false; }
}
export type { Stats as Dirent };

export const constants = { O_RDONLY: 0, O_NOFOLLOW: 0, O_NONBLOCK: 0, R_OK: 4, W_OK: 2, F_OK: 0, X_OK: 1 };

function p(path: unknown): string {
  return path instanceof URL ? path.pathname : String(path);
}

export function existsSync(path: unknown): boolean {
  try {
    return fs().analyzePath(p(path)).exists as boolean;
  } catch {
    return false;
  }
}

export function statSync(path: unknown, opts?: { throwIfNoEntry?: boolean }): Stats | undefined {
  if (opts?.throwIfNoEntry === false && !existsSync(path)) return undefined;
  return new Stats(wrap('stat', p(path), () => fs().stat(p(path))));
}
export function lstatSync(path: unknown, opts?: { throwIfNoEntry?: boolean }): Stats | undefined {
  if (opts?.throwIfNoEntry === false && !existsSync(path)) return undefined;
  return new Stats(wrap('lstat', p(path), () => fs().lstat(p(path))));
}

const streams = new Map<number, { stream: any; path: string }>(); // eslint-disable-line @typescript-eslint/no-explicit-any

export function openSync(path: unknown, flags: string | number = 'r'): number {
  const f = typeof flags === 'number' ? 'r' : flags;
  const s = wrap('open', p(path), () => fs().open(p(path), f)) as { fd: number };
  streams.set(s.fd, { stream: s, path: p(path) });
  return s.fd;
}
function streamOf(fd: number) {
  const s = streams.get(fd);
  if (!s) throw new FsError('EBADF', 'read', String(fd));
  return s;
}
export function fstatSync(fd: number): Stats {
  return statSync(streamOf(fd).path)!;
}
export function readSync(fd: number, buffer: Uint8Array, offset = 0, length = buffer.byteLength - offset, position: number | null = null): number {
  const s = streamOf(fd);
  return wrap('read', s.path, () => fs().read(s.stream, buffer, offset, length, position ?? undefined)) as number;
}
export function writeSync(fd: number, buffer: Uint8Array, offset = 0, length = buffer.byteLength - offset, position: number | null = null): number {
  const s = streamOf(fd);
  return wrap('write', s.path, () => fs().write(s.stream, buffer, offset, length, position ?? undefined)) as number;
}
export function closeSync(fd: number): void {
  const s = streams.get(fd);
  if (!s) return;
  streams.delete(fd);
  fs().close(s.stream);
}
export function fsyncSync(): void {}

const decoder = new TextDecoder();

export function readFileSync(path: unknown, enc?: string | { encoding?: string | null }): any {
  const e = typeof enc === 'string' ? enc : enc?.encoding ?? undefined;
  const bytes = wrap('open', p(path), () => fs().readFile(p(path), { encoding: 'binary' })) as Uint8Array;
  return e ? decoder.decode(bytes) : bytes;
}
export function writeFileSync(path: unknown, data: string | Uint8Array): void {
  wrap('open', p(path), () => fs().writeFile(p(path), data));
}
export function copyFileSync(from: unknown, to: unknown): void {
  writeFileSync(to, readFileSync(from) as Uint8Array);
}

export function mkdirSync(path: unknown, opts?: { recursive?: boolean } | number): string | undefined {
  const path_ = p(path);
  if (typeof opts === 'object' && opts.recursive) {
    let at = '';
    for (const part of path_.split('/').filter(Boolean)) {
      at += `/${part}`;
      if (!existsSync(at)) wrap('mkdir', at, () => fs().mkdir(at));
    }
    return path_;
  }
  wrap('mkdir', path_, () => fs().mkdir(path_));
  return undefined;
}
let tmpCount = 0;
export function mkdtempSync(prefix: string): string {
  const dir = `${prefix}${(++tmpCount).toString(36)}${Date.now().toString(36)}`;
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function readdirSync(path: unknown, opts?: { withFileTypes?: boolean }): any[] {
  const names = (wrap('scandir', p(path), () => fs().readdir(p(path))) as string[]).filter((n) => n !== '.' && n !== '..').sort();
  if (!opts?.withFileTypes) return names;
  return names.map((name) => Object.assign(statSync(`${p(path)}/${name}`)!, { name, parentPath: p(path), path: p(path) }));
}

export function renameSync(from: unknown, to: unknown): void {
  wrap('rename', p(from), () => fs().rename(p(from), p(to)));
}
export function unlinkSync(path: unknown): void {
  wrap('unlink', p(path), () => fs().unlink(p(path)));
}
export function rmSync(path: unknown, opts?: { recursive?: boolean; force?: boolean }): void {
  const path_ = p(path);
  if (!existsSync(path_)) {
    if (opts?.force) return;
    throw new FsError('ENOENT', 'rm', path_);
  }
  if (statSync(path_)!.isDirectory()) {
    if (!opts?.recursive) throw new FsError('EISDIR', 'rm', path_);
    for (const n of readdirSync(path_) as string[]) rmSync(`${path_}/${n}`, opts);
    wrap('rmdir', path_, () => fs().rmdir(path_));
  } else {
    unlinkSync(path_);
  }
}
export function linkSync(from: unknown, to: unknown): void {
  // MEMFS has no hard links; a copy serves atomic.ts's "link, then rename" just as well here.
  if (existsSync(to)) throw new FsError('EEXIST', 'link', p(to));
  copyFileSync(from, to);
}
export function cpSync(from: unknown, to: unknown, opts?: { recursive?: boolean }): void {
  if (statSync(from)!.isDirectory()) {
    mkdirSync(to, { recursive: true });
    for (const n of readdirSync(from) as string[]) cpSync(`${p(from)}/${n}`, `${p(to)}/${n}`, opts);
  } else {
    copyFileSync(from, to);
  }
}
export function realpathSync(path: unknown): string {
  return wrap('realpath', p(path), () => (fs().lookupPath(p(path), { follow: true }) as { path: string }).path);
}
realpathSync.native = realpathSync;
export function accessSync(path: unknown): void {
  if (!existsSync(path)) throw new FsError('ENOENT', 'access', p(path));
}
/** The page's memory is the limit, not a disk: report plenty of room (the page checks its own budget). */
export function statfsSync(): { bavail: number; bsize: number; blocks: number; bfree: number } {
  return { bavail: 2 ** 40, bsize: 1, blocks: 2 ** 40, bfree: 2 ** 40 };
}

/** One chunk: the file's bytes (files here are already in memory). */
export function createReadStream(path: unknown): AsyncIterable<Uint8Array> {
  return {
    async *[Symbol.asyncIterator]() {
      yield readFileSync(path) as Uint8Array;
    },
  };
}

export const promises = {
  readFile: async (path: unknown, enc?: string | { encoding?: string }) => readFileSync(path, enc),
  writeFile: async (path: unknown, data: string | Uint8Array) => writeFileSync(path, data),
};

export default {
  existsSync, statSync, lstatSync, openSync, fstatSync, readSync, writeSync, closeSync, fsyncSync, readFileSync, writeFileSync,
  copyFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, unlinkSync, rmSync, linkSync, cpSync, realpathSync, accessSync,
  statfsSync, createReadStream, promises, constants, Stats,
};
