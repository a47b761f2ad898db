/** Options and helpers every subcommand shares, so flags mean the same thing everywhere. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { initBackend, BACKENDS, type BackendName } from '../engine/backend.js';
import { writeAtomically } from '../io/atomic.js';
import { loadModel, type LoadedModel } from '../io/model.js';

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

/** "55x47x3" -> [55, 47, 3]. */
export function parseShape(v: string): [number, number, number] {
  const m = /^(\d+)x(\d+)x(\d+)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`shape must look like HxWxC (e.g. 55x47x3), got '${v}'`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export interface EngineOpts {
  backend: BackendName;
  batchSize: number;
}

export interface ModelOpts {
  weightsArch: string;
  inputShape?: [number, number, number];
}

export interface DataOpts {
  scale: number;
  layout: 'auto' | 'nchw' | 'nhwc';
}

export function addEngineOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backend <name>', 'tensor backend: wasm (fast, default) or cpu (pure JS, reference)').choices(BACKENDS).default('wasm'))
    .option('--batch-size <n>', 'images per forward pass', parseInteger('--batch-size', 1, 65536), 256);
}

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--weights-arch <name>', 'architecture for Keras weights-only files (built in: deepid, vgg, resnet)', 'deepid')
    .option('--input-shape <HxWxC>', 'input shape for weights-only files when it cannot be inferred', parseShape);
}

export function addDataOptions(cmd: Command): Command {
  return cmd
    .option('--scale <n>', 'divide raw pixels by n (255 maps 0..255 to 0..1; 1 keeps raw pixels)', parsePositive('--scale'), 1)
    .addOption(new Option('--layout <layout>', 'layout of HDF5 `data`: auto, nchw (the CSAW lab) or nhwc').choices(['auto', 'nchw', 'nhwc']).default('auto'));
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

/** `--json` alone prints JSON on stdout; `--json FILE` writes it (atomically) and keeps the table. */
export async function emitJson(value: unknown, json: string | boolean | undefined): Promise<boolean> {
  if (json === undefined || json === false) return false;
  const text = `${JSON.stringify(value, null, 2)}\n`;
  if (json === true) {
    process.stdout.write(text);
    return true;
  }
  await writeAtomically(json, (tmp) => writeFileSync(tmp, text), { overwrite: true });
  return false;
}

export { progress } from './progress.js';
