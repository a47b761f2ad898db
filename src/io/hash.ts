/** sha256 of input files (and of tfjs folders), streamed, for reproducibility records. */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256 of a file; for a folder, of its files' names and hashes in sorted order. */
export async function sha256(path: string): Promise<string> {
  if (!statSync(path).isDirectory()) return hashFile(path);
  const h = createHash('sha256');
  for (const name of readdirSync(path).sort()) {
    const p = join(path, name);
    if (statSync(p).isFile()) h.update(`${name}\0${await hashFile(p)}\n`);
  }
  return h.digest('hex');
}
