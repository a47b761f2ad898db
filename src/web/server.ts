/**
 * `goodnet serve` as a function: the browser page (dist/web, built by `npm run build`) served
 * from 127.0.0.1 only, with a strict Content-Security-Policy. The page is plain static files; this
 * server adds only the headers (and refuses anything but GET/HEAD of files inside its folder).
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GoodnetError } from '../errors.js';

/** The built page: dist/web next to dist/src (this file is dist/src/web/server.js once compiled). */
export const WEB_ROOT = resolve(fileURLToPath(new URL('../../web', import.meta.url)));

/**
 * Same-origin only. 'wasm-unsafe-eval' lets WebAssembly compile (tfjs, h5wasm, resvg); no
 * 'unsafe-eval' anywhere: the report's figures interpret vega's expressions (vega-interpreter).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "worker-src 'self'", "connect-src 'self'",
  "img-src 'self' data: blob:", "style-src 'self' 'unsafe-inline'", "font-src 'self'", "frame-src 'self'",
  "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join('; ');
/** The worker's policy: the same as the page's. */
export const WORKER_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.ttf': 'font/ttf', '.png': 'image/png', '.h5': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8', '.proto': 'text/plain; charset=utf-8',
};

export interface ServeOptions {
  /** TCP port on 127.0.0.1; 0 picks a free one (default 8080). */
  port?: number;
  /** Folder to serve (default WEB_ROOT). */
  root?: string;
}

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** Start serving the page; resolves once listening. */
export async function serveWeb(o: ServeOptions = {}): Promise<RunningServer> {
  const root = resolve(o.root ?? WEB_ROOT);
  if (!existsSync(join(root, 'index.html'))) {
    throw new GoodnetError('the web page is not built here (no index.html): run `npm run build` first', root);
  }
  const port = o.port ?? 8080;
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new GoodnetError(`--port must be 0..65535, got ${port}`);
  const realRoot = realpathSync(root);
  const server = createServer((req, res) => {
    const headers = {
      'Content-Security-Policy': CONTENT_SECURITY_POLICY, 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer',
      'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-cache',
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    } catch {
      res.writeHead(400, headers).end();
      return;
    }
    if (rel.endsWith('/')) rel += 'index.html';
    const file = resolve(realRoot, `.${rel}`);
    let real: string | undefined;
    try {
      real = realpathSync(file);
    } catch {
      real = undefined;
    }
    if (!real || !(real === realRoot || real.startsWith(realRoot + sep)) || !statSync(real).isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    const body = readFileSync(real);
    const csp = /(^|\/)worker\.js$/.test(rel) ? WORKER_CONTENT_SECURITY_POLICY : CONTENT_SECURITY_POLICY;
    res.writeHead(200, { ...headers, 'Content-Security-Policy': csp, 'Content-Type': TYPES[extname(real)] ?? 'application/octet-stream', 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(new GoodnetError(err.code === 'EADDRINUSE' ? `port ${port} on 127.0.0.1 is in use (choose another with --port)` : `cannot listen on 127.0.0.1:${port}: ${err.message}`)));
    server.listen(port, '127.0.0.1', () => ok());
  });
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  return {
    url: `http://127.0.0.1:${actual}/`, port: actual, server,
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}
