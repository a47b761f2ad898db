/**
 * The page's Web Worker: goodnet's library (the same modules the CLI runs) on files held in
 * h5wasm's in-memory file system. Inputs live under /in/<role>/<name>; a run writes the CLI's
 * outputs to /out/prune and sends them back for download. Cancel = the page terminates this worker.
 */
import * as h5 from 'h5wasm';
import { unzipSync } from 'fflate';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { initBackend, getBackend } from '../engine/backend.js';
import { GoodnetError, oneLine } from '../errors.js';
import { loadModel, type LoadedModel } from '../io/model.js';
import { openDataset } from '../io/dataset.js';
import { resolvePreprocessing, preprocessingText } from '../io/preprocess.js';
import { findCutPoint } from '../defense/graph.js';
import { computePrune, disposePrune, ORDER_TITLE, writePrune } from '../defense/prune.js';
import { setAutoEngineUsesOrt } from '../eval/ort_model.js';
import { markdownGoodNetTable } from '../defense/goodnet_tables.js';
import '../models/index.js'; // architectures for Keras weights-only files
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from './shims/fs.js';
import type { DataInfo, FromWorker, ModelInfo, Role, ToWorker } from './protocol.js';

const post = (m: FromWorker, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);

/** The CLI's one-line error, `goodnet: error: FILE: what is wrong`, with the user's file name instead of /in/... */
function errorLine(err: unknown, names: Map<string, string>): string {
  let text = err instanceof GoodnetError ? err.message : `internal error: ${(err as Error)?.message ?? String(err)}`;
  for (const [path, name] of names) text = text.split(path).join(name);
  return `goodnet: error: ${oneLine(text)}`;
}

const files = new Map<Role, string>();
const names = new Map<string, string>();
let model: LoadedModel | undefined;

const ready = (async () => {
  await h5.ready;
  // Where the report's package.json, fonts and resvg's wasm are looked for (shims/node.ts maps them here).
  mkdirSync('/goodnet', { recursive: true });
  writeFileSync('/goodnet/package.json', JSON.stringify({ version: GOODNET_VERSION }));
  setWasmPaths(new URL('./', self.location.href).href);
  await initBackend('wasm');
  setAutoEngineUsesOrt(false); // no onnxruntime-node here: 'auto' is tfjs, without an ONNX export per pass
})();

declare const GOODNET_VERSION: string;

async function describe(role: Role, path: string): Promise<ModelInfo | DataInfo> {
  if (role === 'model') {
    model?.net.dispose();
    model = undefined;
    // ONNX's schema, where io/onnx_proto.ts looks for it (relative to the bundle's import.meta.url).
    if (/\.onnx$/i.test(path)) await loadAssets([['assets/onnx.proto', '/goodnet/proto/onnx.proto']]);
    const m = await loadModel(path);
    const r = resolvePreprocessing(m, {});
    const cut = findCutPoint(m.net, undefined, path);
    model = m;
    return {
      kind: 'model', format: m.format, inputShape: m.inputShape, numClasses: m.numClasses,
      layers: m.net.layers.map((l) => ({ name: l.name, className: l.getClassName(), outputShape: JSON.stringify(l.outputShape).replace(/null/g, 'N') })),
      preprocessing: preprocessingText(r.preprocessing), preprocessingFrom: r.from,
      prunePoint: `${cut.conv} (${cut.channels} channels): ${cut.reason}`,
    };
  }
  const ds = await openDataset(path, model ? { expect: model.inputShape } : {});
  try {
    const [height, width, channels] = ds.imageShape;
    const per = height * width * channels;
    const n = Math.min(10, ds.length);
    const pixels = new Uint8Array(n * per);
    let max = 0;
    const raw = new Float32Array(n * per);
    for await (const b of ds.batches(16)) {
      raw.set(b.x.subarray(0, Math.min(b.n, n - b.start) * per), b.start * per);
      if (b.start + b.n >= n) break;
    }
    for (const v of raw) max = Math.max(max, v);
    const k = max <= 1 ? 255 : 1;
    for (let i = 0; i < raw.length; i++) pixels[i] = Math.max(0, Math.min(255, Math.round(raw[i]! * k)));
    const counts = new Map<number, number>();
    for (const l of ds.labels) counts.set(l, (counts.get(l) ?? 0) + 1);
    return {
      kind: 'data', images: ds.length, shape: ds.imageShape, labels: [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c),
      sample: { n, height, width, channels, pixels, labels: [...ds.labels.subarray(0, n)] },
    };
  } finally {
    ds.close();
  }
}

function listFiles(dir: string, base = dir): { path: string; bytes: Uint8Array }[] {
  const out: { path: string; bytes: Uint8Array }[] = [];
  for (const n of readdirSync(dir) as string[]) {
    const p = `${dir}/${n}`;
    if (statSync(p)!.isDirectory()) out.push(...listFiles(p, base));
    else out.push({ path: p.slice(base.length + 1), bytes: readFileSync(p) as Uint8Array });
  }
  return out;
}

/** The CLI command that computes the same, with the user's file names (shown in the report). */
function commandLine(s: Extract<ToWorker, { type: 'run' }>['settings']): string {
  const arg = (flag: string, role: Role) => (files.has(role) ? [flag, names.get(files.get(role)!)!] : []);
  const q = (a: string) => (/^[\w./,:=-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  return ['goodnet', 'prune', ...arg('-m', 'model'), ...arg('--clean-valid', 'cleanValid'), ...arg('--poisoned-valid', 'poisonedValid'),
    ...arg('--clean-test', 'cleanTest'), ...arg('--poisoned-test', 'poisonedTest'), '-t', String(s.target),
    '--order', s.orders.length === 2 ? 'both' : s.orders[0]!, '--thresholds', s.thresholds.join(','),
    ...(s.scale !== undefined ? ['--scale', String(s.scale)] : []), ...(s.mean ? ['--mean', s.mean.join(',')] : []), ...(s.std ? ['--std', s.std.join(',')] : []),
    '-o', 'prune'].map(q).join(' ') + '   # computed in the web page';
}

async function run(settings: Extract<ToWorker, { type: 'run' }>['settings']): Promise<void> {
  const t0 = performance.now();
  const need = (r: Role) => {
    const p = files.get(r);
    if (!p) throw new GoodnetError(`no ${r === 'model' ? 'model' : r.replace(/([A-Z])/g, ' $1').toLowerCase() + ' data'} given`);
    return p;
  };
  need('model');
  if (!model) throw new GoodnetError('the model could not be read', names.get(files.get('model')!));
  const cleanValid = need('cleanValid');
  const poisonedValid = need('poisonedValid');
  const cleanTest = files.get('cleanTest');
  const poisonedTest = files.get('poisonedTest');
  const r = resolvePreprocessing(model, { scale: settings.scale, mean: settings.mean, std: settings.std });
  model.preprocessing = r.preprocessing;
  const px = { scale: r.preprocessing.scale, ...(r.preprocessing.mean ? { mean: r.preprocessing.mean } : {}), ...(r.preprocessing.std ? { std: r.preprocessing.std } : {}) };
  const result = await computePrune({
    model, cleanValid, poisonedValid, cleanTest, poisonedTest, target: settings.target, thresholds: settings.thresholds, orders: settings.orders, ...px,
    command: commandLine(settings),
    onActivations: (set, done, total) => post({ type: 'progress', phase: set, done, total, text: `activations: ${set}` }),
    onStep: (order, st, last) => post({ type: 'step', order, step: st.step, last, accuracy: st.accuracy, asr: st.asr }),
  });
  try {
    const tables = result.summary.goodnet ? result.orders.map((o) => `${ORDER_TITLE[o]}\n\n${markdownGoodNetTable(result.summary.goodnet!, o)}`).join('\n\n') : '';
    let reportHtml: string | undefined;
    let out: { path: string; bytes: Uint8Array }[] = [];
    if (settings.outputs !== false) {
      post({ type: 'progress', phase: 'writing', done: 0, total: 1, text: 'writing the repaired models and tables' });
      rmSync('/out', { recursive: true, force: true });
      mkdirSync('/out', { recursive: true });
      await writePrune(result, '/out/prune');
      post({ type: 'progress', phase: 'report', done: 0, total: 1, text: 'drawing the report' });
      await loadReportAssets();
      const { writeReport } = await import('../report/build.js');
      const html = await writeReport('/out/prune', { title: 'goodnet report (web page)' });
      reportHtml = readFileSync(html, 'utf8') as string;
      out = listFiles('/out/prune');
    }
    post({ type: 'done', summary: result.summary, tables, reportHtml, files: out, seconds: (performance.now() - t0) / 1000 }, out.map((f) => f.bytes.buffer as ArrayBuffer));
  } finally {
    disposePrune(result);
  }
}

/** The most a zip of images may unpack to. */
const MAX_UNZIPPED_BYTES = 1024 * 2 ** 20;

function unzipTo(bytes: Uint8Array, root: string, name: string): string {
  let total = 0;
  const entries = unzipSync(bytes, {
    filter: (f) => {
      total += f.originalSize;
      if (total > MAX_UNZIPPED_BYTES) throw new GoodnetError(`zip unpacks to more than ${MAX_UNZIPPED_BYTES / 2 ** 20} MiB, over this page's budget`, name);
      return !f.name.endsWith('/') && !/(^|\/)(__MACOSX|\.)/.test(f.name);
    },
  });
  for (const [entry, data] of Object.entries(entries)) {
    const parts = entry.split('/').filter((x) => x && x !== '.' && x !== '..');
    if (!parts.length) continue;
    mkdirSync([root, ...parts.slice(0, -1)].join('/'), { recursive: true });
    writeFileSync([root, ...parts].join('/'), data);
  }
  mkdirSync(root, { recursive: true });
  // A zip holding one folder: that folder is the data set.
  const top = readdirSync(root) as string[];
  return top.length === 1 && statSync(`${root}/${top[0]}`)!.isDirectory() ? `${root}/${top[0]}` : root;
}

/** The report draws with DejaVu fonts and resvg's wasm, served next to this worker (copied by the build). */
function loadReportAssets(): Promise<void> {
  return loadAssets([
    ['assets/DejaVuSans.ttf', '/node_modules/dejavu-fonts-ttf/ttf/DejaVuSans.ttf'],
    ['assets/DejaVuSans-Bold.ttf', '/node_modules/dejavu-fonts-ttf/ttf/DejaVuSans-Bold.ttf'],
    ['assets/resvg.wasm', '/node_modules/@resvg/resvg-wasm/index_bg.wasm'],
  ]);
}

/** Files the library reads next to its own code (URL next to this worker, path in the in-memory file system). */
async function loadAssets(assets: [string, string][]): Promise<void> {
  for (const [url, path] of assets) {
    if (existsSync(path)) continue;
    const res = await fetch(new URL(url, self.location.href));
    if (!res.ok) throw new Error(`${url}: ${res.status}`);
    mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true });
    writeFileSync(path, new Uint8Array(await res.arrayBuffer()));
  }
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  try {
    await ready;
    if (m.type === 'put') {
      const dir = `/in/${m.role}`;
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      let path = `${dir}/${m.name.replace(/[/\\]/g, '_')}`;
      if (/\.zip$/i.test(m.name) && m.role !== 'model') {
        // A zip of images: unpacked into a folder, read as the CLI reads an image folder.
        path = unzipTo(m.bytes, path.replace(/\.zip$/i, ''), m.name);
      } else {
        writeFileSync(path, m.bytes);
      }
      files.set(m.role, path);
      names.set(path, m.name);
      try {
        post({ type: 'read', role: m.role, info: await describe(m.role, path) });
      } catch (err) {
        if (m.role === 'model') files.delete('model');
        post({ type: 'error', role: m.role, message: errorLine(err, names) });
      }
    } else if (m.type === 'putFolder') {
      const dir = `/in/${m.role}`;
      rmSync(dir, { recursive: true, force: true });
      const root = `${dir}/${m.name.replace(/[/\\]/g, '_')}`;
      for (const f of m.files) {
        const parts = f.path.split('/').filter((x) => x && x !== '.' && x !== '..');
        if (!parts.length) continue;
        mkdirSync([root, ...parts.slice(0, -1)].join('/'), { recursive: true });
        writeFileSync([root, ...parts].join('/'), f.bytes);
      }
      mkdirSync(root, { recursive: true });
      files.set(m.role, root);
      names.set(root, `${m.name}/`);
      try {
        post({ type: 'read', role: m.role, info: await describe(m.role, root) });
      } catch (err) {
        if (m.role === 'model') files.delete('model');
        post({ type: 'error', role: m.role, message: errorLine(err, names) });
      }
    } else if (m.type === 'drop') {
      files.delete(m.role);
    } else if (m.type === 'run') {
      await run(m.settings);
    }
  } catch (err) {
    if (!(err instanceof GoodnetError)) console.error(err);
    const file = err instanceof GoodnetError ? err.file : undefined;
    const role = [...files.entries()].find(([, p]) => p === file)?.[0];
    post({ type: 'error', role, message: errorLine(err, names) });
  }
};

void ready.then(() => post({ type: 'ready', backend: getBackend() }), (err) => post({ type: 'error', message: errorLine(err, names) }));
