/**
 * The page: files in, settings, Run / Cancel, results. All computing happens in worker.ts (the
 * library); this file only moves bytes and draws. Cancel terminates the worker, so the running sweep
 * stops at once; a fresh worker is started and given the files again.
 */
import { zipSync } from 'fflate';
import { ROLES, type DataInfo, type FromWorker, type ModelInfo, type OutputFile, type Role, type RunSettings, type ToWorker } from './protocol.js';

/**
 * Largest file the page reads (it holds every input in memory, once in the page and once in the
 * worker). `?max-file-mib=N` in the page's address lowers it (never raises it).
 */
const asked = Number(new URLSearchParams(location.search).get('max-file-mib'));
export const MAX_FILE_BYTES = Math.round(Math.min(256, asked > 0 ? asked : 256) * 2 ** 20);
/** Largest total of all inputs. */
export const MAX_TOTAL_BYTES = 3 * MAX_FILE_BYTES;

declare const GOODNET_VERSION: string;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(n < 10 * 2 ** 20 ? 1 : 0)} MiB`;

type Held = { name: string; bytes: Uint8Array; files?: undefined } | { name: string; files: { path: string; bytes: Uint8Array }[]; bytes?: undefined };
const held = new Map<Role, Held>();
const ok = new Set<Role>();
let worker: Worker;
let running = false;
let stepsAfterCancel = 0;
let lastStep: { order: string; step: number; last: number } | undefined;

function setState(s: string): void {
  document.body.dataset['state'] = s;
}
function status(text: string): void {
  $('status').textContent = text;
}

function startWorker(): void {
  const w = new Worker(new URL('./worker.js', document.baseURI), { type: 'module', name: 'goodnet' });
  worker = w;
  w.onmessage = (e: MessageEvent<FromWorker>) => {
    if (w !== worker) {
      // A cancelled worker is terminated; should anything still arrive from it, it is counted and dropped.
      if (e.data.type === 'step') stepsAfterCancel++;
      return;
    }
    onMessage(e.data);
  };
  w.onerror = (e) => showError(undefined, `goodnet: error: ${e.message}`);
  // A fresh worker (at start, or after Cancel) gets every file again; Run waits until it has read them.
  for (const [role, h] of held) {
    ok.delete(role);
    $(`info-${role}`).textContent = 'reading…';
    sendHeld(role, h);
  }
  updateRun();
}

function sendHeld(role: Role, h: Held): void {
  if (h.files) send({ type: 'putFolder', role, name: h.name, files: h.files.map((f) => ({ path: f.path, bytes: f.bytes.slice() })) });
  else send({ type: 'put', role, name: h.name, bytes: h.bytes.slice() });
}

const heldBytes = (h: Held) => (h.files ? h.files.reduce((n, f) => n + f.bytes.byteLength, 0) : h.bytes.byteLength);

function send(m: ToWorker, transfer: Transferable[] = []): void {
  worker.postMessage(m, transfer);
}

function showError(role: Role | undefined, message: string): void {
  $(role ? `error-${role}` : 'error-run').textContent = message;
}

function onMessage(m: FromWorker): void {
  switch (m.type) {
    case 'ready':
      $('backend').textContent = m.backend;
      if (document.body.dataset['state'] === 'loading') {
        setState('ready');
        status('ready');
      }
      break;
    case 'read':
      ok.add(m.role);
      $(`error-${m.role}`).textContent = '';
      if (m.info.kind === 'model') showModel(m.info);
      else showData(m.role, m.info);
      updateRun();
      break;
    case 'error':
      if (m.role) {
        ok.delete(m.role);
        if (m.role === 'model') $('model-read').textContent = 'no model';
      }
      showError(m.role, m.message);
      if (running) finish('error');
      updateRun();
      break;
    case 'progress':
      $<HTMLProgressElement>('progress').value = m.total ? m.done / m.total : 0;
      status(`${m.text}${m.total > 1 ? ` (${m.done}/${m.total})` : ''}`);
      break;
    case 'step':
      lastStep = { order: m.order, step: m.step, last: m.last };
      $<HTMLProgressElement>('progress').value = m.last ? m.step / m.last : 0;
      $('progress').dataset['step'] = String(m.step);
      status(`sweep ${m.order}: step ${m.step}/${m.last}, accuracy ${(m.accuracy * 100).toFixed(2)}%, ASR ${(m.asr * 100).toFixed(2)}%`);
      break;
    case 'done':
      showResults(m.summary as Summary, m.tables, m.reportHtml, m.files);
      finish('done');
      status(`done in ${m.seconds.toFixed(1)} s`);
      $<HTMLProgressElement>('progress').value = 1;
      break;
  }
}

function finish(state: string): void {
  running = false;
  setState(state);
  $<HTMLButtonElement>('cancel').disabled = true;
  $<HTMLButtonElement>('demo').disabled = false;
  updateRun();
}

function updateRun(): void {
  $<HTMLButtonElement>('run').disabled = running || !(ok.has('model') && ok.has('cleanValid') && ok.has('poisonedValid'));
}

function el(tag: string, text?: string, cls?: string): HTMLElement {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function table(head: string[], rows: (string | number)[][]): HTMLTableElement {
  const t = el('table') as HTMLTableElement;
  const tr = el('tr');
  for (const h of head) tr.append(el('th', h));
  t.append(el('thead'), el('tbody'));
  t.tHead!.append(tr);
  for (const r of rows) {
    const row = el('tr');
    for (const c of r) row.append(el('td', String(c)));
    t.tBodies[0]!.append(row);
  }
  return t;
}

function showModel(info: ModelInfo): void {
  const box = $('model-read');
  box.className = '';
  box.replaceChildren(
    el('p', `Model: ${info.format}, input ${info.inputShape.join('×')}, ${info.numClasses} classes, ${info.layers.length} layers; ` +
      `preprocessing ${info.preprocessing} (${info.preprocessingFrom === 'file' ? 'recorded in the file' : "the CLI's default"}); prune point ${info.prunePoint}`),
  );
  const d = el('details');
  d.append(el('summary', 'layers'), table(['layer', 'kind', 'output'], info.layers.map((l) => [l.name, l.className, l.outputShape])));
  box.append(d);
  $<HTMLInputElement>('target').max = String(info.numClasses - 1);
  $(`info-model`).textContent = `${info.format}, ${info.inputShape.join('×')} → ${info.numClasses} classes`;
}

const dataBoxes = new Map<Role, HTMLElement>();

function showData(role: Role, info: DataInfo): void {
  $(`info-${role}`).textContent = `${info.images.toLocaleString('en')} images ${info.shape.join('×')}`;
  let box = dataBoxes.get(role);
  if (!box) {
    box = el('div');
    box.id = `read-${role}`;
    dataBoxes.set(role, box);
    $('data-read').append(box);
  }
  const s = info.sample;
  const canvas = el('canvas', undefined, 'samples') as HTMLCanvasElement;
  const zoom = Math.max(1, Math.round(56 / s.height));
  canvas.width = s.n * s.width;
  canvas.height = s.height;
  canvas.style.width = `${s.n * s.width * zoom}px`;
  canvas.style.height = `${s.height * zoom}px`;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < s.n; i++) {
    for (let y = 0; y < s.height; y++) {
      for (let x = 0; x < s.width; x++) {
        const src = ((i * s.height + y) * s.width + x) * s.channels;
        const dst = (y * canvas.width + i * s.width + x) * 4;
        const g = s.pixels[src]!;
        img.data[dst] = g;
        img.data[dst + 1] = s.channels >= 3 ? s.pixels[src + 1]! : g;
        img.data[dst + 2] = s.channels >= 3 ? s.pixels[src + 2]! : g;
        img.data[dst + 3] = 255;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  const label = ($(`file-${role}`).previousElementSibling as HTMLElement).textContent ?? role;
  box.replaceChildren(
    el('p', `${label}: ${info.images.toLocaleString('en')} images of ${info.shape.join('×')}; per label: ${info.labels.join(', ')}; first ${s.n} (labels ${s.labels.join(' ')}):`),
    canvas,
  );
}

async function setFile(role: Role, file: File): Promise<void> {
  $(`error-${role}`).textContent = '';
  $(`info-${role}`).textContent = '';
  ok.delete(role);
  updateRun();
  const others = [...held.entries()].filter(([r]) => r !== role).reduce((s, [, h]) => s + heldBytes(h), 0);
  if (file.size > MAX_FILE_BYTES) {
    showError(role, `goodnet: error: ${file.name}: file is ${mib(file.size)}, over this page's memory budget of ${mib(MAX_FILE_BYTES)} per file (use the goodnet command line for it)`);
    return;
  }
  if (others + file.size > MAX_TOTAL_BYTES) {
    showError(role, `goodnet: error: ${file.name}: with the other files this makes ${mib(others + file.size)}, over this page's budget of ${mib(MAX_TOTAL_BYTES)} in all`);
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  held.set(role, { name: file.name, bytes });
  $(`info-${role}`).textContent = 'reading…';
  send({ type: 'put', role, name: file.name, bytes: bytes.slice() });
}

/** A tfjs model folder, picked with the folder input: model.json and its weight files. */
async function setFolder(role: Role, list: FileList): Promise<void> {
  $(`error-${role}`).textContent = '';
  $(`info-${role}`).textContent = '';
  ok.delete(role);
  updateRun();
  const all = [...list];
  const total = all.reduce((n, f) => n + f.size, 0);
  const name = (all[0]?.webkitRelativePath ?? '').split('/')[0] || 'model';
  if (total > MAX_FILE_BYTES) {
    showError(role, `goodnet: error: ${name}/: folder is ${mib(total)}, over this page's memory budget of ${mib(MAX_FILE_BYTES)} per file (use the goodnet command line for it)`);
    return;
  }
  const files = await Promise.all(all.map(async (f) => ({ path: f.webkitRelativePath.split('/').slice(1).join('/') || f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
  const h: Held = { name, files };
  held.set(role, h);
  $(`info-${role}`).textContent = 'reading…';
  sendHeld(role, h);
}

function numbers(id: string, what: string): number[] | undefined {
  const v = $<HTMLInputElement>(id).value.trim();
  if (!v) return undefined;
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.some((x) => !Number.isFinite(x))) throw new Error(`${what} must be numbers separated by commas, got '${v}'`);
  return xs;
}

function settings(): RunSettings {
  const target = Number($<HTMLInputElement>('target').value);
  const thresholds = numbers('thresholds', 'thresholds') ?? [];
  const order = $<HTMLSelectElement>('order').value;
  const scale = numbers('scale', 'scale');
  if (scale && scale.length !== 1) throw new Error('scale is one number');
  return {
    target, thresholds, orders: order === 'both' ? ['asc', 'desc'] : [order as 'asc' | 'desc'],
    ...(scale ? { scale: scale[0] } : {}), mean: numbers('mean', 'mean'), std: numbers('std', 'std'),
  };
}

function run(): void {
  showError(undefined, '');
  let s: RunSettings;
  try {
    s = settings();
  } catch (err) {
    showError(undefined, `goodnet: error: ${(err as Error).message}`);
    return;
  }
  running = true;
  lastStep = undefined;
  setState('running');
  $('results').hidden = true;
  $<HTMLButtonElement>('cancel').disabled = false;
  $<HTMLButtonElement>('demo').disabled = true;
  $<HTMLProgressElement>('progress').value = 0;
  updateRun();
  status('running…');
  send({ type: 'run', settings: s });
}

function cancel(): void {
  if (!running) return;
  worker.terminate();
  const at = lastStep;
  $('progress').dataset['cancelledAt'] = at ? `${at.order}:${at.step}` : '';
  finish('cancelled');
  status(`cancelled${at ? ` at sweep ${at.order} step ${at.step}/${at.last}` : ''}; nothing more is computed`);
  document.body.dataset['stepsAfterCancel'] = String(stepsAfterCancel);
  startWorker();
}

interface Summary {
  target: number;
  baseline: { validAccuracy: number; validAsr: number; testAccuracy?: number; testAsr?: number };
  sweeps: { order: string; picks: { threshold: number; step: number | null; fractionPruned: number; validAccuracy: number; validAsr: number }[] }[];
}

const pct = (x: number | undefined, d = 2) => (x === undefined ? '-' : `${(x * 100).toFixed(d)}%`);

function download(name: string, bytes: Uint8Array, type = 'application/octet-stream'): HTMLAnchorElement {
  const a = el('a', name) as HTMLAnchorElement;
  a.href = URL.createObjectURL(new Blob([bytes as BlobPart], { type }));
  a.download = name.replace(/\//g, '_');
  return a;
}

function showResults(s: Summary, tables: string, reportHtml: string | undefined, files: OutputFile[]): void {
  $('results').hidden = false;
  const b = s.baseline;
  $('baseline').textContent = `The BadNet: validation accuracy ${pct(b.validAccuracy)}, ASR ${pct(b.validAsr)}` +
    (b.testAccuracy !== undefined ? `; test accuracy ${pct(b.testAccuracy)}, ASR ${pct(b.testAsr)}` : '') + ` (target ${s.target}).`;
  $('picks').replaceChildren(...s.sweeps.map((sw) => table([`${sw.order}: X`, 'step', 'pruned', 'accuracy', 'ASR'], sw.picks.map((p) => [
    `${p.threshold}%`, p.step ?? 'not reached', p.step === null ? '-' : pct(p.fractionPruned, 1), p.step === null ? '-' : pct(p.validAccuracy), p.step === null ? '-' : pct(p.validAsr),
  ]))));
  $('tables').textContent = tables || '(give test sets for the GoodNet tables)';
  $('summary-json').textContent = JSON.stringify(s);
  const links: HTMLElement[] = [];
  if (files.length) {
    const zip = zipSync(Object.fromEntries(files.map((f) => [`goodnet-prune/${f.path}`, f.bytes])), { level: 6 });
    links.push(download('goodnet-prune.zip', zip, 'application/zip'));
    for (const f of files.filter((x) => /(^|\/)(summary\.json|goodnet\.csv|sweep\.csv|report\.html)$|repaired_[\d.]+\.h5$/.test(x.path))) {
      links.push(download(f.path, f.bytes));
    }
  }
  $('downloads').replaceChildren(...links);
  const frame = $<HTMLIFrameElement>('report');
  if (reportHtml) frame.srcdoc = reportHtml;
  frame.hidden = !reportHtml;
}

async function demo(): Promise<void> {
  showError(undefined, '');
  status('loading the demo files…');
  const spec = (await (await fetch('demo/demo.json')).json()) as { files: Record<Role, string>; lab: { target?: number } };
  for (const role of ROLES) {
    const name = spec.files[role];
    const bytes = new Uint8Array(await (await fetch(`demo/${name}`)).arrayBuffer());
    held.set(role, { name, bytes });
    $(`info-${role}`).textContent = 'reading…';
    send({ type: 'put', role, name, bytes: bytes.slice() });
  }
  $<HTMLInputElement>('target').value = String(spec.lab.target ?? 0);
  // Run once every file has been read (the worker answers in order).
  const waitRead = () => new Promise<void>((resolve) => {
    const check = () => (ROLES.every((r) => ok.has(r)) ? resolve() : setTimeout(check, 50));
    check();
  });
  await waitRead();
  run();
}

function init(): void {
  $('budget').textContent = `${mib(MAX_FILE_BYTES)} (${mib(MAX_TOTAL_BYTES)} in all)`;
  $('version').textContent = GOODNET_VERSION;
  for (const role of ROLES) {
    const input = $<HTMLInputElement>(`file-${role}`);
    input.addEventListener('change', () => {
      const f = input.files?.[0];
      if (f) void setFile(role, f);
    });
    const row = input.parentElement!;
    row.addEventListener('dragover', (e) => {
      e.preventDefault();
      row.classList.add('drop');
    });
    row.addEventListener('dragleave', () => row.classList.remove('drop'));
    row.addEventListener('drop', (e) => {
      e.preventDefault();
      row.classList.remove('drop');
      const f = e.dataTransfer?.files[0];
      if (f) void setFile(role, f);
    });
  }
  const dir = $<HTMLInputElement>('dir-model');
  dir.addEventListener('change', () => {
    if (dir.files?.length) void setFolder('model', dir.files);
  });
  $('run').addEventListener('click', run);
  $('cancel').addEventListener('click', cancel);
  $('demo').addEventListener('click', () => void demo().catch((err) => showError(undefined, `goodnet: error: demo: ${(err as Error).message}`)));
  startWorker();
}

init();
