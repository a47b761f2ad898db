#!/usr/bin/env node
/**
 * Build the browser page (dist/web/) from the library's own sources with esbuild:
 * src/web/page.ts (the page) and src/web/worker.ts (the Web Worker running the library).
 * Node built-ins resolve to the small shims in src/web/shims; native Node packages (sharp,
 * onnxruntime-node, synckit) to a stub. The wasm binaries, the report's fonts and the demo
 * set are copied next to the bundles: the page fetches nothing from anywhere else.
 */
import { build } from 'esbuild';
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');
const shims = join(root, 'src', 'web', 'shims');
const require = createRequire(join(root, 'package.json'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const NODE = {
  fs: 'fs.ts', 'fs/promises': 'fs_promises.ts', path: 'path', os: 'node.ts', crypto: 'node.ts', module: 'node.ts', url: 'node.ts',
  worker_threads: 'node.ts', child_process: 'node.ts',
};

const shimPlugin = {
  name: 'goodnet-web-shims',
  setup(b) {
    b.onResolve({ filter: /^(sharp|onnxruntime-node|synckit)$/ }, () => ({ path: join(shims, 'stub.ts') }));
    b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (a) => {
      const id = a.path.replace(/^node:/, '');
      if (id === 'path') return { path: require.resolve('path-browserify') };
      if (NODE[id]) return { path: join(shims, NODE[id]) };
      if (a.path.startsWith('node:')) return { errors: [{ text: `${a.path} has no browser shim (imported by ${a.importer})` }] };
      return undefined;
    });
    b.onResolve({ filter: /^h5wasm\/node$/ }, () => ({ path: join(root, 'node_modules/h5wasm/dist/esm/hdf5_hl.js') }));
    b.onResolve({ filter: /^pngjs$/ }, () => ({ path: join(shims, 'pngjs.ts') }));
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const t0 = performance.now();
const result = await build({
  entryPoints: { page: join(root, 'src/web/page.ts'), worker: join(root, 'src/web/worker.ts') },
  bundle: true,
  format: 'esm',
  splitting: true,
  platform: 'browser',
  target: 'es2022',
  outdir: out,
  chunkNames: 'chunks/[name]-[hash]',
  minify: true,
  sourcemap: false,
  metafile: true,
  // (build.json below records each bundle's size)
  legalComments: 'linked',
  charset: 'utf8', // h5wasm inlines its wasm in a string: escaping it makes it a sixth bigger
  logLevel: 'warning',
  inject: [join(shims, 'globals.ts')],
  define: {
    GOODNET_VERSION: JSON.stringify(pkg.version),
    // report/build.ts reads ../../../package.json next to itself: /goodnet/package.json in the worker's file system.
    'import.meta.url': '"file:///goodnet/dist/src/report/build.js"',
    global: 'globalThis',
  },
  plugins: [shimPlugin],
});

for (const f of ['index.html', 'style.css']) copyFileSync(join(root, 'src/web', f), join(out, f));
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'));
for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm']) copyFileSync(join(wasmDir, f), join(out, f));
mkdirSync(join(out, 'assets'));
copyFileSync(require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf'), join(out, 'assets/DejaVuSans.ttf'));
copyFileSync(require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans-Bold.ttf'), join(out, 'assets/DejaVuSans-Bold.ttf'));
copyFileSync(require.resolve('@resvg/resvg-wasm/index_bg.wasm'), join(out, 'assets/resvg.wasm'));
copyFileSync(join(root, 'proto', 'onnx.proto'), join(out, 'assets/onnx.proto'));
cpSync(join(root, 'web', 'demo'), join(out, 'demo'), { recursive: true });

const sizes = Object.entries(result.metafile.outputs).map(([f, o]) => [f, o.bytes]);
const total = sizes.reduce((s, [, b]) => s + b, 0);
const all = (dir) => {
  let n = 0;
  for (const e of (readdirSyncSafe(dir))) n += e.isDirectory() ? all(join(dir, e.name)) : statSync(join(dir, e.name)).size;
  return n;
};
function readdirSyncSafe(dir) {
  return require('node:fs').readdirSync(dir, { withFileTypes: true });
}
const h5 = Object.values(result.metafile.outputs).reduce((n, o) => n + Object.entries(o.inputs).filter(([f]) => f.includes('h5wasm')).reduce((m, [, i]) => m + i.bytesInOutput, 0), 0);
writeFileSync(join(out, 'build.json'), `${JSON.stringify({ version: pkg.version, bundles: Object.fromEntries(sizes), h5wasmBytes: h5 }, null, 1)}\n`);
console.log(`h5wasm (wasm inlined): ${(h5 / 1e6).toFixed(2)} MB of it`);
console.log(`dist/web: JavaScript ${(total / 1e6).toFixed(2)} MB in ${sizes.length} files, ${(all(out) / 1e6).toFixed(2)} MB in all (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
