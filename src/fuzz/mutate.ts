/**
 * Mutators: byte-level damage for every file, and structure-aware changes (absurd layer
 * parameters, malformed or deeply nested JSON, swapped/retyped/reshaped HDF5 datasets,
 * huge declared dimensions, huge image headers) that get past the first sanity checks.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { zipSync } from 'fflate';
import { createH5 } from '../io/hdf5.js';
import { AT, decodeModel, encodeModel, type ModelProto } from '../io/onnx_proto.js';
import { writeH5Model, type H5ModelSpec, type Seed } from './seeds.js';

export type Rng = () => number;

const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

/** Values that break naive readers. */
const ABSURD: unknown[] = [1e9, 0, -1, 1.5, 2 ** 31, -(2 ** 31), 1e308, null, 'x', '', [], {}, [0, 0], [1e9, 1e9], true, [-3, 2], 65536, 'relu', NaN];

export function mutateBytes(rng: Rng, buf: Buffer): { bytes: Buffer; how: string } {
  const b = Buffer.from(buf);
  const op = int(rng, 7);
  const at = int(rng, Math.max(1, b.length));
  switch (op) {
    case 0: return { bytes: b.subarray(0, at), how: `truncate@${at}` };
    case 1: {
      const k = 1 + int(rng, 16);
      for (let i = 0; i < k; i++) { const p = int(rng, b.length); b[p] = b[p]! ^ (1 << int(rng, 8)); }
      return { bytes: b, how: `flip${k}` };
    }
    case 2: {
      const len = 1 + int(rng, 64);
      for (let i = at; i < Math.min(b.length, at + len); i++) b[i] = int(rng, 256);
      return { bytes: b, how: `random@${at}+${len}` };
    }
    case 3: {
      const len = 1 + int(rng, 64);
      const chunk = Buffer.alloc(len).map(() => int(rng, 256));
      return { bytes: Buffer.concat([b.subarray(0, at), chunk, b.subarray(at)]), how: `insert@${at}+${len}` };
    }
    case 4: {
      const len = 1 + int(rng, 256);
      return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + len)]), how: `delete@${at}+${len}` };
    }
    case 5: {
      const v = pick(rng, [0x00, 0xff, 0x7f, 0x80]);
      const len = 1 + int(rng, 8);
      b.fill(v, at, Math.min(b.length, at + len));
      return { bytes: b, how: `fill${v}@${at}+${len}` };
    }
    default: {
      const from = int(rng, b.length);
      const len = 1 + int(rng, 128);
      b.copy(b, at, from, Math.min(b.length, from + len));
      return { bytes: b, how: `copy${from}->${at}+${len}` };
    }
  }
}

/** Replace, delete or nest one random node of a JSON value. */
export function mutateJson(rng: Rng, value: unknown): unknown {
  const doc = structuredClone(value);
  const nodes: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 40 || typeof v !== 'object' || v === null) return;
    for (const k of Object.keys(v)) {
      const key = Array.isArray(v) ? Number(k) : k;
      nodes.push({ parent: v as never, key });
      walk((v as Record<string, unknown>)[k], depth + 1);
    }
  };
  walk(doc, 0);
  if (nodes.length === 0) return doc;
  // Prefer the interesting keys: layer parameters and shapes.
  const hot = nodes.filter((n) => typeof n.key === 'string' && /filters|units|kernel_size|pool_size|strides|shape|rate|axis|dilation|padding|class_name|inbound|layers|paths|weights|dtype|name|size|target|cropping|dims/.test(n.key));
  const n = hot.length > 0 && rng() < 0.7 ? pick(rng, hot) : pick(rng, nodes);
  const p = n.parent as Record<string | number, unknown>;
  const op = int(rng, 6);
  if (op === 0 && !Array.isArray(p)) delete p[n.key];
  else if (op === 1) {
    let v: unknown = p[n.key];
    for (let i = 0; i < 200; i++) v = [v];
    p[n.key] = v;
  } else if (op === 2 && Array.isArray(p[n.key])) {
    (p[n.key] as unknown[]).push(...(p[n.key] as unknown[]));
  } else if (op === 3 && typeof p[n.key] === 'number') {
    p[n.key] = pick(rng, [1e9, 0, -1, 2 ** 31, 1e5, 0.5]);
  } else p[n.key] = structuredClone(pick(rng, ABSURD));
  return doc;
}

/** JSON text that is not a usable document. */
function badJsonText(rng: Rng, good: string): string {
  switch (int(rng, 5)) {
    case 0: return good.slice(0, int(rng, good.length));
    case 1: return '['.repeat(200000) + ']'.repeat(200000);
    case 2: return '{"a":'.repeat(50000) + '1' + '}'.repeat(50000);
    case 3: return pick(rng, ['null', '1', '"x"', '[]', '{}', '', '\u0000', 'NaN', '{"class_name":"Sequential","config":{"layers":[]}}']);
    default: return good.replace(/"/, '');
  }
}

function cloneSpec(spec: H5ModelSpec): H5ModelSpec {
  return {
    attrs: { ...spec.attrs },
    weightsRoot: spec.weightsRoot,
    layers: spec.layers.map((l) => ({ name: l.name, weightNames: l.weightNames, weights: l.weights.map((w) => ({ ...w })) })),
  };
}

async function mutateH5Model(rng: Rng, spec0: H5ModelSpec, out: string): Promise<string> {
  const spec = cloneSpec(spec0);
  const withW = spec.layers.filter((l) => l.weights.length > 0);
  const layer = pick(rng, withW);
  const w = pick(rng, layer.weights);
  const n = w.shape.reduce((a, b) => a * b, 1);
  const op = int(rng, spec.attrs.model_config ? 12 : 9);
  let how: string;
  switch (op) {
    case 0: w.dtype = pick(rng, ['<i', '<d', '<B']); w.data = w.dtype === '<d' ? Float64Array.from(w.data as Float32Array) : w.dtype === '<B' ? new Uint8Array(n) : new Int32Array(n); how = `dtype ${w.dtype}`; break;
    case 1: w.shape = [...w.shape].reverse(); w.shape[0] = w.shape[0]! + 0; how = 'reversed shape'; if (w.shape.length === 1) { w.shape = [1, n]; } break;
    case 2: { const f = Float32Array.from(w.data as Float32Array); f[int(rng, f.length)] = pick(rng, [NaN, Infinity, -Infinity]); w.data = f; how = 'non-finite'; break; }
    case 3: w.declared = w.shape.map((d, i) => (i === 0 ? pick(rng, [1e6, 1e9, 2 ** 31]) : d)); how = `declared ${w.declared.join('x')}`; break;
    case 4: layer.weights.splice(layer.weights.indexOf(w), 1); how = 'dropped weight'; break;
    case 5: layer.weightNames = [...layer.weights.map((x) => x.name), `${layer.name}/ghost:0`]; how = 'ghost weight name'; break;
    case 6: { const other = pick(rng, withW); const tmp = layer.weights; layer.weights = other.weights.map((x) => ({ ...x, name: x.name.replace(other.name, layer.name) })); other.weights = tmp.map((x) => ({ ...x, name: x.name.replace(layer.name, other.name) })); how = 'swapped layers'; break; }
    case 7: w.data = Array.from({ length: Math.min(n, 4) }, () => 'x'); w.shape = [Math.min(n, 4)]; w.dtype = 'S1'; how = 'string weight'; break;
    case 8: spec.layers.splice(spec.layers.indexOf(layer), 1); how = 'dropped layer'; break;
    case 9: case 10: spec.attrs.model_config = JSON.stringify(mutateJson(rng, JSON.parse(spec.attrs.model_config as string))); how = 'config json'; break;
    default: spec.attrs.model_config = badJsonText(rng, spec.attrs.model_config as string); how = 'config text'; break;
  }
  await writeH5Model(spec, out);
  return how;
}

async function writeCsawVariant(rng: Rng, seed: NonNullable<Seed['csaw']>, out: string): Promise<string> {
  const { images, labels, n, h, w, c } = seed;
  const f = await createH5(out);
  let how = '';
  try {
    let data: { data: unknown; shape: number[]; dtype: string; declared?: number[] } = { data: Float32Array.from(images), shape: [n, h, w, c], dtype: '<f' };
    let label: { data: unknown; shape: number[]; dtype: string; declared?: number[] } = { data: Float64Array.from(labels), shape: [n], dtype: '<d' };
    let names = ['data', 'label'];
    switch (int(rng, 12)) {
      case 0: names = ['label', 'data']; how = 'swapped'; break;
      case 1: data = rng() < 0.5 ? { data: new Uint8Array(images), shape: [n, h, w, c], dtype: '<B' } : { data: new Int32Array(images), shape: [n, h, w, c], dtype: '<i' }; how = 'byte data'; break;
      case 2: data = { data: Array.from({ length: n }, () => 'img'), shape: [n], dtype: 'S3' }; how = 'string data'; break;
      case 3: label = { data: labels.map(String), shape: [n], dtype: 'S1' }; how = 'string label'; break;
      case 4: data.shape = pick(rng, [[n, h * w * c], [n, h, w, c, 1], [n * h, w, c], [1, n, h, w, c]]); how = `shape ${data.shape.join('x')}`; break;
      case 5: data.declared = pick(rng, [[2 ** 31, h, w, c], [n, 1e6, 1e6, c], [n, h, w, 1e9], [1e12, h, w, c], [n, 4000, 4000, 3], [2e7, h, w, c]]); how = `declared data ${data.declared.join('x')}`; break;
      case 6: label.declared = [pick(rng, [1e9, 2 ** 31, 1e12])]; data.declared = [label.declared[0]!, h, w, c]; how = `declared ${label.declared[0]} rows`; break;
      case 7: label = { data: Float64Array.from(labels.map((l, i) => (i === 2 ? pick(rng, [NaN, -1, 1.5, 1e300, Infinity]) : l))), shape: [n], dtype: '<d' }; how = 'bad label'; break;
      case 8: { const d = Float32Array.from(images); d[int(rng, d.length)] = pick(rng, [NaN, Infinity]); data.data = d; how = 'non-finite pixel'; break; }
      case 9: label = { data: Float64Array.from(labels.slice(1)), shape: [n - 1], dtype: '<d' }; how = 'short label'; break;
      case 10: label = { data: new Float64Array(n * 2), shape: [n, 2], dtype: '<d' }; how = 'label (N,2)'; break;
      default: data = { data: new Float32Array(0), shape: [0, h, w, c], dtype: '<f' }; label = { data: new Float64Array(0), shape: [0], dtype: '<d' }; how = 'empty'; break;
    }
    const put = (name: string, d: typeof data) => {
      if (d.declared) {
        f.create_dataset({ name, data: d.data as never, shape: d.shape, dtype: d.dtype, maxshape: d.declared.map(() => null), chunks: d.shape.map((x) => Math.max(1, x)) });
        (f.get(name) as unknown as { resize: (s: number[]) => void }).resize(d.declared);
      } else f.create_dataset({ name, data: d.data as never, shape: d.shape, dtype: d.dtype });
    };
    put(names[0]!, data);
    put(names[1]!, label);
  } finally {
    f.close();
  }
  return how;
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A PNG whose IHDR declares a huge size (valid CRC), with a little zlib data after it. */
function hugePng(rng: Rng): Buffer {
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(pick(rng, [100000, 0x7fffffff, 30000, 1]), 0);
  ihdr.writeUInt32BE(pick(rng, [100000, 0x7fffffff, 30000, 1, 0]), 4);
  ihdr[8] = pick(rng, [8, 16, 1, 3]); ihdr[9] = pick(rng, [0, 2, 6, 3, 4, 5]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]);
}

/** JPEG with its SOF frame size patched to a huge value. */
function hugeJpeg(rng: Rng, good: Buffer): Buffer {
  const b = Buffer.from(good);
  for (let i = 2; i + 9 < b.length; i++) {
    if (b[i] === 0xff && (b[i + 1] === 0xc0 || b[i + 1] === 0xc2)) {
      b.writeUInt16BE(pick(rng, [0xffff, 30000, 0]), i + 5);
      b.writeUInt16BE(pick(rng, [0xffff, 30000, 1]), i + 7);
      break;
    }
  }
  return b;
}

/** A `.keras` zip with one member damaged, dropped, doubled or lying about its size. */
function mutateKerasZip(rng: Rng, members: Record<string, Uint8Array>, out: string): string {
  const files: Record<string, Uint8Array | [Uint8Array, { level: 0 | 9 }]> = { ...members };
  const name = pick(rng, Object.keys(members));
  const op = int(rng, 5);
  let how: string;
  if (op === 0) {
    delete files[name];
    how = `drop ${name}`;
  } else if (op === 1 && name.endsWith('.json')) {
    const good = Buffer.from(members[name]!).toString('utf8');
    files[name] = Buffer.from(rng() < 0.5 ? JSON.stringify(mutateJson(rng, JSON.parse(good))) : badJsonText(rng, good));
    how = `${name} json`;
  } else if (op === 2) {
    files[name] = [members[name]!, { level: 9 }];
    const zip = zipSync(files);
    // Lie in the central directory about the inflated size (bomb-like or truncating).
    const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
    const size = pick(rng, [0, 1, 0xffffffff, 2 ** 30, members[name]!.length * 2000]);
    for (let i = 0; i + 46 < zip.length; i++) {
      if (dv.getUint32(i, true) !== 0x02014b50) continue;
      const n = dv.getUint16(i + 28, true);
      if (Buffer.from(zip.subarray(i + 46, i + 46 + n)).toString('latin1') === name) dv.setUint32(i + 24, size >>> 0, true);
    }
    writeFileSync(out, zip);
    return `${name} declared ${size}`;
  } else {
    files[name] = mutateBytes(rng, Buffer.from(members[name]!)).bytes;
    how = `${name} bytes`;
  }
  writeFileSync(out, zipSync(files));
  return how;
}

/** Write one mutant of `seed` at `out` (a file, or a folder for tfjs seeds); returns what was done. */
export async function mutate(rng: Rng, seed: Seed, out: string): Promise<string> {
  if (seed.folder && seed.kind === 'data') {
    cpSync(seed.path, out, { recursive: true });
    const files = (readdirSync(out, { recursive: true }) as string[]).filter((f) => f.endsWith('.png')).sort();
    const victim = join(out, pick(rng, files));
    if (rng() < 0.3) {
      const name = pick(rng, ['label99999999999.png', 'label-1.png', 'label1e400.png', 'label=.png', 'label=3.5.png', '.png', 'label7.jpg']);
      renameSync(victim, join(dirname(victim), name));
      return `renamed ${name}`;
    }
    const m = mutateBytes(rng, readFileSync(victim));
    writeFileSync(victim, m.bytes);
    return `image ${m.how}`;
  }
  if (seed.folder) {
    cpSync(seed.path, out, { recursive: true });
    const jsonPath = join(out, 'model.json');
    const good = readFileSync(jsonPath, 'utf8');
    const op = int(rng, 4);
    if (op === 0) { writeFileSync(jsonPath, JSON.stringify(mutateJson(rng, seed.modelJson))); return 'model.json json'; }
    if (op === 1) {
      const doc = structuredClone(seed.modelJson) as { weightsManifest: { weights: { shape: unknown; dtype: unknown }[]; paths: unknown[] }[] };
      const ws = doc.weightsManifest[0]!.weights;
      const w = pick(rng, ws);
      const k = int(rng, 4);
      if (k === 0) w.shape = pick(rng, [[1e9], [2 ** 31, 2 ** 31], [-1, -8], [1e5, 1e5, 1e5], [NaN], ['x'], null, [0.5, 16]]);
      else if (k === 1) w.dtype = pick(rng, ['float16', 'string', 'bool', 'complex64', 7, 'uint8']);
      else if (k === 2) doc.weightsManifest[0]!.paths = pick(rng, [['../x.bin'], ['/etc/passwd'], [7], [], ['group1-shard1of1.bin', 'group1-shard1of1.bin'], ['.']]);
      else ws.push(...ws);
      writeFileSync(jsonPath, JSON.stringify(doc));
      return 'manifest';
    }
    if (op === 2) { writeFileSync(jsonPath, badJsonText(rng, good)); return 'model.json text'; }
    const shard = join(out, 'group1-shard1of1.bin');
    const m = mutateBytes(rng, readFileSync(shard));
    writeFileSync(shard, m.bytes);
    return `shard ${m.how}`;
  }
  const useStructure = rng() < 0.5;
  if (useStructure && seed.kerasZip) return mutateKerasZip(rng, seed.kerasZip, out);
  if (useStructure && seed.onnx) { const r = mutateOnnx(rng, readFileSync(seed.path)); writeFileSync(out, r.bytes); return r.how; }
  if (useStructure && seed.h5Model) return mutateH5Model(rng, seed.h5Model, out);
  if (useStructure && seed.csaw) return writeCsawVariant(rng, seed.csaw, out);
  if (useStructure && (seed.kind === 'image' || seed.kind === 'trigger') && rng() < 0.3) {
    if (seed.path.endsWith('.jpg')) { writeFileSync(out, hugeJpeg(rng, readFileSync(seed.path))); return 'huge jpeg'; }
    writeFileSync(out, hugePng(rng));
    return 'huge png';
  }
  const m = mutateBytes(rng, readFileSync(seed.path));
  writeFileSync(out, m.bytes);
  return m.how;
}

/** Structure-aware ONNX damage: absurd attributes, dims, op types, dtypes, shapes, inputs/outputs, opsets. */
export function mutateOnnx(rng: Rng, good: Buffer): { bytes: Uint8Array; how: string } {
  const m = decodeModel(good, 'seed') as ModelProto;
  const g = m.graph!;
  const nodes = g.node ?? [];
  const node = pick(rng, nodes);
  const inits = g.initializer ?? [];
  const big = () => pick(rng, [0, -1, 1e9, 2 ** 31, 65537, 3, 1e6, -(2 ** 31)]);
  let how: string;
  switch (int(rng, 12)) {
    case 0: {
      const attrs = node.attribute ?? [];
      if (attrs.length === 0) { node.attribute = [{ name: pick(rng, ['pads', 'group', 'axis', 'strides', 'perm', 'kernel_shape']), type: AT.INTS, ints: [big(), big()] }]; how = 'added attribute'; break; }
      const a = pick(rng, attrs);
      if (a.ints && a.ints.length) a.ints = a.ints.map(() => (rng() < 0.5 ? big() : 1));
      else if (a.type === AT.INT) a.i = big();
      else if (a.type === AT.FLOAT) a.f = pick(rng, [NaN, Infinity, -1, 0, 1e30]);
      else a.ints = [big()];
      how = `attribute ${a.name}`;
      break;
    }
    case 1: { const t = pick(rng, inits); t.dims = (t.dims ?? []).map(() => big()); how = `dims of ${t.name}`; break; }
    case 2: node.opType = pick(rng, ['Resize', 'LSTM', 'Conv', 'Gemm', 'MaxPool', 'Reshape', 'Add', 'Concat', 'Transpose', 'Softmax', 'BatchNormalization', 'Pad', '']); how = `op ${node.opType}`; break;
    case 3: nodes.splice(nodes.indexOf(node), 1); how = 'dropped node'; break;
    case 4: node.input = [...(node.input ?? [])].reverse(); how = 'swapped inputs'; break;
    case 5: { const d = g.input?.[0]?.type?.tensorType?.shape?.dim; if (d && d.length) d[int(rng, d.length)] = rng() < 0.3 ? { dimParam: 'H' } : { dimValue: big() }; how = 'input dims'; break; }
    case 6: { const t = pick(rng, inits); if (t.rawData) t.rawData = t.rawData.subarray(0, int(rng, t.rawData.length)); t.dataType = pick(rng, [1, 7, 6, 11, 10, 8, 3]); how = `data of ${t.name}`; break; }
    case 7: g.output = [...(g.output ?? []), ...(g.output ?? [])]; how = 'two outputs'; break;
    case 8: m.opsetImport = [{ domain: '', version: pick(rng, [1, 8, 9, 22, 1e6]) }]; how = 'opset'; break;
    case 9: node.input = [...(node.input ?? []), pick(rng, ['', 'nope', node.output?.[0] ?? 'x'])]; how = 'extra input'; break;
    case 10: { const t = pick(rng, inits); const n = Math.min(64, (t.rawData?.length ?? 0) / 4); t.rawData = undefined; t.floatData = Array.from({ length: n }, () => pick(rng, [NaN, Infinity, 1, 0])); t.dataType = 1; how = `float_data of ${t.name}`; break; }
    default: node.output = [pick(rng, [g.output?.[0]?.name ?? 'y', node.input?.[0] ?? 'x', ''])]; how = 'rewired output'; break;
  }
  return { bytes: encodeModel(m), how: `onnx ${how}` };
}

export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}
