/** Options and helpers every subcommand shares, so flags mean the same thing everywhere. */
import '../models/index.js'; // registers the architectures for Keras weights-only files (--weights-arch)
import { InvalidArgumentError, Option, type Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { initBackend, BACKENDS, type BackendName } from '../engine/backend.js';
import { checkWritable, writeAtomically } from '../io/atomic.js';
import { loadModel, type LoadedModel } from '../io/model.js';
import { DEFAULT_ENGINE, ENGINES, type EngineName } from '../engine/ort.js';
import { checkOrtExport } from '../eval/ort_model.js';
import { preprocessingText, preprocessingToJson, resolvePreprocessing, type InputLayout, type Preprocessing } from '../io/preprocess.js';

export function parseInteger(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer${min > -Infinity ? ` >= ${min}` : ''}, got '${v}'`);
    }
    return n;
  };
}

export function parsePositive(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${v}'`);
    return n;
  };
}

export function parseNonNegative(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number >= 0, got '${v}'`);
    return n;
  };
}

/** "55x47x3" -> [55, 47, 3]. */
export function parseShape(v: string): [number, number, number] {
  const m = /^(\d+)x(\d+)x(\d+)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`shape must look like HxWxC (e.g. 55x47x3), got '${v}'`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export interface EngineOpts {
  backend: BackendName;
  /** Unset: picked from the image size (autoBatchSize). */
  batchSize?: number;
}

export interface ModelOpts {
  weightsArch: string;
  inputShape?: [number, number, number];
}

export interface DataOpts extends PreprocessingOpts {
  /** Undefined when not given: the model file's recorded preprocessing applies (else 1). */
  scale?: number;
  layout: 'auto' | 'nchw' | 'nhwc';
}

export function addEngineOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backend <name>', 'tensor backend: wasm (fast, default) or cpu (pure JS, reference)').choices(BACKENDS).default('wasm'))
    .option('--batch-size <n>', 'images per forward pass (default: picked from the image size, at most 256 images and 4 M input values per batch: 256 of 55x47x3, 1 of 2048x2048)', parseInteger('--batch-size', 1, 65536));
}

/** `--engine auto|tfjs|ort` and `--ort-threads`: for the commands whose forward passes go through predictDataset (eval, predict, goodnet, strip). */
export interface ForwardEngineOpts {
  engine: EngineName;
  ortThreads?: number;
}

export function addForwardEngineOption(cmd: Command): Command {
  return cmd
    .addOption(new Option('--engine <name>', 'forward engine: auto (default: ort when the model has an ONNX form and --backend is wasm, else tfjs), tfjs (tfjs-layers on --backend) or ort (onnxruntime-node on the model\'s ONNX form; an error without one)').choices(ENGINES).default(DEFAULT_ENGINE))
    .option('--ort-threads <n>', `onnxruntime intra-op threads with --engine ort (0: the core count, the default; scores do not depend on it)`, parseInteger('--ort-threads', 0, 1024));
}

/** With --engine ort: refuse, before any work, models that have no ONNX form. */
export function checkForwardEngine(o: Partial<ForwardEngineOpts>, ...models: LoadedModel[]): void {
  if (o.engine === 'ort') for (const m of models) checkOrtExport(m);
}

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--weights-arch <name>', 'architecture for Keras weights-only files (built in: deepid, vgg, resnet)', 'deepid')
    .option('--input-shape <HxWxC>', 'input shape for weights-only files when it cannot be inferred', parseShape);
}

export function addDataOptions(cmd: Command): Command {
  return addPreprocessingOptions(cmd
    .option('--scale <n>', "divide raw pixels by n (255 maps 0..255 to 0..1; 1 keeps raw pixels; default: the model file's, else 1)", parsePositive('--scale'))
    .addOption(new Option('--layout <layout>', 'layout of HDF5 `data`: auto, nchw (the CSAW lab) or nhwc').choices(['auto', 'nchw', 'nhwc']).default('auto')));
}

// ---------------------------------------------------------------------------------------
// Preprocessing: --mean, --std, --input-layout (with --scale), resolved against the model file

export interface PreprocessingOpts {
  mean?: number[];
  std?: number[];
  inputLayout?: InputLayout;
}

/** "0.485,0.456,0.406" -> [0.485, 0.456, 0.406]; one value or one per channel. */
export function parseNumberList(name: string) {
  return (v: string): number[] => {
    const parts = v.split(',').map((s) => s.trim());
    const xs = parts.map(Number);
    if (parts.some((s) => s === '') || xs.some((x) => !Number.isFinite(x))) {
      throw new InvalidArgumentError(`${name} must be one number or comma-separated numbers (one per channel), got '${v}'`);
    }
    return xs;
  };
}

/** --mean, --std and --input-layout: x' = (x / scale - mean[c]) / std[c], recorded with written models. */
export function addPreprocessingOptions(cmd: Command): Command {
  return cmd
    .option('--mean <list>', "subtract after --scale: one value or one per channel, e.g. 0.485,0.456,0.406 (default: the model file's, else none)", parseNumberList('--mean'))
    .option('--std <list>', "then divide by: one value or one per channel, e.g. 0.229,0.224,0.225 (default: the model file's, else none)", parseNumberList('--std'))
    .addOption(new Option('--input-layout <layout>', "layout of the model's input tensor, recorded with written models (default: the model file's)").choices(['nchw', 'nhwc']));
}

/**
 * The command's preprocessing: resolvePreprocessing(model, flags). Sets `model.preprocessing`
 * to the result (so models written from it record it) and prints one line on stderr when
 * flags override what the model file records, or when one of `others` (B' beside B, which
 * get the same input) records something else. Returns the pixel options for the library.
 */
export function commandPreprocessing(
  model: LoadedModel, o: DataOpts, others: LoadedModel[] = [], log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): { scale: number; mean?: number[]; std?: number[] } {
  const r = resolvePreprocessing(model, { scale: o.scale, mean: o.mean, std: o.std, layout: o.inputLayout });
  if (r.overridden) {
    log(`goodnet: note: ${model.source} records preprocessing (${preprocessingText(r.file!)}); overridden by the flags: ${preprocessingText(r.preprocessing)}`);
  }
  model.preprocessing = r.preprocessing;
  for (const other of others) {
    if (other.preprocessing && preprocessingToJson(other.preprocessing) !== preprocessingToJson(r.preprocessing)) {
      log(`goodnet: note: ${other.source} records preprocessing (${preprocessingText(other.preprocessing)}); both models get ${preprocessingText(r.preprocessing)} (from ${r.from === 'flags' ? 'the flags' : r.from === 'file' ? model.source : 'the default'})`);
    }
  }
  const p: Preprocessing = r.preprocessing;
  return { scale: p.scale, ...(p.mean ? { mean: p.mean } : {}), ...(p.std ? { std: p.std } : {}) };
}

/** The options of every command that runs a model on data: model loading, pixels, engine. */
export function addModelDataEngineOptions(cmd: Command): Command {
  return addEngineOptions(addDataOptions(addModelOptions(cmd)));
}

export async function setUp(o: EngineOpts): Promise<void> {
  await initBackend(o.backend);
}

export async function openModel(path: string, o: ModelOpts): Promise<LoadedModel> {
  return loadModel(path, { arch: o.weightsArch, inputShape: o.inputShape });
}

/**
 * `--json <file>`: the value is REQUIRED (so the option never takes a positional argument
 * as its file); `-` prints the JSON on stdout instead of the table.
 */
export function jsonOption(what = 'the result'): Option {
  return new Option('--json <file>', `write ${what} as JSON to file (an existing file only with --force), or - to print it on stdout instead of the table`);
}

export interface OutputsToCheck {
  /** Everything the run reads. */
  inputs: (string | undefined)[];
  /** The --json value ('-' is stdout). */
  json?: string;
  /** An output folder or model path (-o). */
  out?: string;
  /** true: -o is a folder; undefined: a model (a .h5 file or a tfjs folder). */
  outFolder?: boolean;
  force?: boolean;
  /** A first estimate of the bytes -o needs. */
  outBytes?: number;
}

/** Refuse every output of a command before any work: see src/io/paths.ts for the rules. */
export function checkOutputs(c: OutputsToCheck): void {
  const json = c.json === '-' ? undefined : c.json;
  if (c.out !== undefined) {
    checkWritable(c.out, { folder: c.outFolder, overwrite: c.force, inputs: c.inputs, others: [json], estimateBytes: c.outBytes });
  }
  if (json !== undefined) checkWritable(json, { folder: false, overwrite: c.force, inputs: c.inputs, others: [c.out], estimateBytes: 1 << 16 });
}

/** `--json -` prints JSON on stdout (returns true: skip the table); `--json FILE` writes it (atomically) and keeps the table. */
export async function emitJson(value: unknown, json: string | undefined, force?: boolean): Promise<boolean> {
  if (json === undefined) return false;
  const text = `${JSON.stringify(value, null, 2)}\n`;
  if (json === '-') {
    process.stdout.write(text);
    return true;
  }
  await writeAtomically(json, (tmp) => writeFileSync(tmp, text), { overwrite: force, folder: false });
  return false;
}

export { progress } from './progress.js';
