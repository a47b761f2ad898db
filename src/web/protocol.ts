/** Messages between the page (page.ts) and its worker (worker.ts). Plain, structured-cloneable data. */

export type Role = 'model' | 'cleanValid' | 'poisonedValid' | 'cleanTest' | 'poisonedTest';
export const ROLES: Role[] = ['model', 'cleanValid', 'poisonedValid', 'cleanTest', 'poisonedTest'];

export interface RunSettings {
  target: number;
  thresholds: number[];
  orders: ('asc' | 'desc')[];
  /** Undefined: what the model file records, else the CLI's default (the same rule as the CLI). */
  scale?: number;
  mean?: number[];
  std?: number[];
  /** Write the outputs (models, CSVs, summary.json, report.html) for download (default true). */
  outputs?: boolean;
}

export interface ModelInfo {
  kind: 'model';
  format: string;
  inputShape: number[];
  numClasses: number;
  layers: { name: string; className: string; outputShape: string }[];
  preprocessing: string;
  preprocessingFrom: string;
  prunePoint: string;
}

export interface DataInfo {
  kind: 'data';
  images: number;
  shape: number[];
  labels: number[];
  /** Up to 10 images, raw 0..255, NHWC. */
  sample: { n: number; height: number; width: number; channels: number; pixels: Uint8Array; labels: number[] };
}

export interface OutputFile {
  path: string;
  bytes: Uint8Array;
}

export type ToWorker =
  | { type: 'put'; role: Role; name: string; bytes: Uint8Array }
  /** A folder (a tfjs model: model.json and its weight files), paths relative to it. */
  | { type: 'putFolder'; role: Role; name: string; files: { path: string; bytes: Uint8Array }[] }
  | { type: 'drop'; role: Role }
  | { type: 'run'; settings: RunSettings };

export type FromWorker =
  | { type: 'ready'; backend: string }
  | { type: 'read'; role: Role; info: ModelInfo | DataInfo }
  | { type: 'error'; role?: Role; message: string }
  | { type: 'progress'; phase: string; done: number; total: number; text: string }
  | { type: 'step'; order: 'asc' | 'desc'; step: number; last: number; accuracy: number; asr: number }
  | { type: 'done'; summary: unknown; tables: string; reportHtml?: string; files: OutputFile[]; seconds: number };
