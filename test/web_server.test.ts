/** `goodnet serve` / serveWeb: 127.0.0.1 only, the Content-Security-Policy on every answer, nothing outside its folder. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTENT_SECURITY_POLICY, serveWeb } from '../src/web/server.js';
import { GoodnetError } from '../src/errors.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** A raw request (fetch would normalise '..' away). */
function get(port: number, path: string, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

test('serveWeb serves its folder from 127.0.0.1 with a strict CSP, and nothing outside it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-serve-'));
  const root = join(dir, 'web');
  mkdirSync(root);
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(join(root, 'worker.js'), 'self.onmessage = () => {};');
  writeFileSync(join(dir, 'secret.txt'), 'not served');
  const s = await serveWeb({ root, port: 0 });
  try {
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const addr = s.server.address();
    assert.ok(addr && typeof addr === 'object' && addr.address === '127.0.0.1', 'bound to loopback only');
    const index = await get(s.port, '/');
    assert.equal(index.status, 200);
    assert.match(String(index.headers['content-type']), /^text\/html/);
    assert.equal(index.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
    assert.match(CONTENT_SECURITY_POLICY, /default-src 'none'/);
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /'unsafe-eval'|https?:|\*/);
    const worker = await get(s.port, '/worker.js');
    assert.match(String(worker.headers['content-type']), /^text\/javascript/);
    assert.match(String(worker.headers['content-security-policy']), /connect-src 'self'/);
    assert.doesNotMatch(String(worker.headers['content-security-policy']), /'unsafe-eval'/, 'the worker evaluates no strings either (vega-interpreter)');
    for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/nothing.js']) {
      const r = await get(s.port, p);
      assert.equal(r.status, 404, p);
      assert.ok(!r.body.includes('not served'), p);
    }
    assert.equal((await get(s.port, '/index.html', 'POST')).status, 405);
  } finally {
    await s.close();
  }
  await assert.rejects(serveWeb({ root: dir, port: 0 }), (e: unknown) => e instanceof GoodnetError && /not built here/.test(e.message));
});

test('goodnet serve prints the URL it serves the built page at', { skip: false, timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const line = await new Promise<string>((ok, fail) => {
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) ok(out.split('\n')[0]!);
      });
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('exit', (code) => fail(new Error(`exited ${code}: ${err}`)));
    });
    if (/not built here/.test(line)) return;
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(line)?.[1];
    assert.ok(url, line);
    const r = await fetch(url);
    assert.equal(r.status, 200);
    assert.match(await r.text(), /Content-Security-Policy/);
  } finally {
    child.kill();
  }
});

test('goodnet serve: a bad port is a one-line usage error', async () => {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'serve', '--port', '70000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((ok) => child.on('exit', ok));
  assert.equal(code, 2);
  assert.match(err, /^goodnet: error: .*--port/);
  assert.equal(err.trim().split('\n').length, 1);
});
