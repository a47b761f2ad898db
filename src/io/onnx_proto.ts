/**
 * The ONNX protobuf schema: the official onnx.proto (proto/onnx.proto, copied verbatim from
 * the onnx 1.23 release) compiled at run time by protobufjs. Decoding, encoding, and
 * turning TensorProto contents into numbers.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { GoodnetError } from '../errors.js';

/** ONNX TensorProto.DataType values goodnet reads. */
export const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, DOUBLE: 11 } as const;
/** AttributeProto.AttributeType values. */
export const AT = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

type Int64 = number | { toNumber(): number };

export interface TensorProto {
  name?: string;
  dims?: Int64[];
  dataType?: number;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: Int64[];
  doubleData?: number[];
  rawData?: Uint8Array;
  dataLocation?: number;
  externalData?: { key?: string; value?: string }[];
}
export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: Int64[];
}
export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  opType?: string;
  domain?: string;
  attribute?: AttributeProto[];
}
export interface DimProto { dimValue?: Int64; dimParam?: string }
export interface ValueInfoProto {
  name?: string;
  type?: { tensorType?: { elemType?: number; shape?: { dim?: DimProto[] } } };
}
export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  sparseInitializer?: unknown[];
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  valueInfo?: ValueInfoProto[];
}
export interface ModelProto {
  irVersion?: Int64;
  opsetImport?: { domain?: string; version?: Int64 }[];
  producerName?: string;
  producerVersion?: string;
  graph?: GraphProto;
  metadataProps?: { key?: string; value?: string }[];
  trainingInfo?: unknown[];
  functions?: unknown[];
}

let modelType: protobuf.Type | undefined;

/** The onnx.ModelProto type, from the official schema file shipped with goodnet. */
export function onnxModelType(): protobuf.Type {
  if (!modelType) {
    // dist/src/io -> proto/; dist/bench/src/io (the benchmarks' build) is one level deeper.
    const file = ['../../../proto/onnx.proto', '../../../../proto/onnx.proto'].map((p) => fileURLToPath(new URL(p, import.meta.url))).find((f) => existsSync(f))
      ?? fileURLToPath(new URL('../../../proto/onnx.proto', import.meta.url));
    const root = protobuf.parse(readFileSync(file, 'utf8'), { keepCase: false }).root;
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

/** Int64 field (a number, or a Long for values past 2^53) as a JS number. */
export function num(v: Int64 | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

/** Decode ONNX bytes; anything that is not a ModelProto with a graph is a GoodnetError naming `file`. */
export function decodeModel(bytes: Uint8Array, file: string): ModelProto {
  let m: ModelProto;
  try {
    m = onnxModelType().decode(bytes) as unknown as ModelProto;
  } catch (err) {
    throw new GoodnetError(`not a readable ONNX model (protobuf: ${(err as Error).message.split('\n')[0]})`, file, { cause: err });
  }
  if (!m.graph || !m.graph.node || m.graph.node.length === 0) throw new GoodnetError('not an ONNX model: no graph with nodes', file);
  return m;
}

export function encodeModel(m: ModelProto): Uint8Array {
  const t = onnxModelType();
  return t.encode(t.fromObject(m as never)).finish();
}

const dtypeName: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16' };

export interface TensorValue {
  dims: number[];
  /** float tensors: float32 values; int/bool tensors: exact numbers (float64). */
  data: Float32Array | Float64Array;
  isFloat: boolean;
}

/** The values of a TensorProto (raw_data or typed fields); external data and odd dtypes are refused. */
export function tensorValue(t: TensorProto, file: string, what: string): TensorValue {
  const dims = (t.dims ?? []).map(num);
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new GoodnetError(`${what} has invalid dims (${dims.join(',')})`, file);
  const n = dims.reduce((a, b) => a * b, 1);
  if (n > 100_000_000) throw new GoodnetError(`${what} declares ${n} values; at most 100000000 are allowed`, file);
  if (t.dataLocation === 1 || (t.externalData && t.externalData.length > 0)) {
    throw new GoodnetError(`${what} keeps its data in an external file (external data is not supported; save the model with all tensors inside the .onnx file)`, file);
  }
  const dt = t.dataType ?? 0;
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : undefined;
  const bad = (have: number) => new GoodnetError(`${what} has ${have} values; its dims (${dims.join(',')}) need ${n}`, file);
  const view = (bytesPer: number) => {
    if (raw!.length !== n * bytesPer) throw bad(Math.floor(raw!.length / bytesPer));
    return new DataView(raw!.buffer, raw!.byteOffset, raw!.byteLength);
  };
  switch (dt) {
    case DT.FLOAT: {
      const out = new Float32Array(n);
      if (raw) { const v = view(4); for (let i = 0; i < n; i++) out[i] = v.getFloat32(i * 4, true); }
      else { const f = t.floatData ?? []; if (f.length !== n) throw bad(f.length); out.set(f); }
      return { dims, data: out, isFloat: true };
    }
    case DT.DOUBLE: {
      const out = new Float32Array(n);
      if (raw) { const v = view(8); for (let i = 0; i < n; i++) out[i] = v.getFloat64(i * 8, true); }
      else { const f = t.doubleData ?? []; if (f.length !== n) throw bad(f.length); out.set(f); }
      return { dims, data: out, isFloat: true };
    }
    case DT.INT64: {
      const out = new Float64Array(n);
      if (raw) { const v = view(8); for (let i = 0; i < n; i++) out[i] = Number(v.getBigInt64(i * 8, true)); }
      else { const f = t.int64Data ?? []; if (f.length !== n) throw bad(f.length); for (let i = 0; i < n; i++) out[i] = num(f[i]); }
      return { dims, data: out, isFloat: false };
    }
    case DT.INT32: case DT.INT8: case DT.UINT8: case DT.BOOL: {
      const out = new Float64Array(n);
      if (raw) {
        const size = dt === DT.INT32 ? 4 : 1;
        const v = view(size);
        for (let i = 0; i < n; i++) out[i] = dt === DT.INT32 ? v.getInt32(i * 4, true) : dt === DT.INT8 ? v.getInt8(i) : v.getUint8(i);
      } else { const f = t.int32Data ?? []; if (f.length !== n) throw bad(f.length); out.set(f); }
      return { dims, data: out, isFloat: false };
    }
    default:
      throw new GoodnetError(`${what} has data type ${dtypeName[dt] ?? dt}; goodnet reads float32, float64 and integer tensors`, file);
  }
}

/** A float32 TensorProto in raw_data. */
export function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  const raw = new Uint8Array(data.length * 4);
  const v = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) v.setFloat32(i * 4, data[i]!, true);
  return { name, dims, dataType: DT.FLOAT, rawData: raw };
}

/** An int64 TensorProto in raw_data. */
export function int64Tensor(name: string, dims: number[], data: number[]): TensorProto {
  const raw = new Uint8Array(data.length * 8);
  const v = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) v.setBigInt64(i * 8, BigInt(data[i]!), true);
  return { name, dims, dataType: DT.INT64, rawData: raw };
}
