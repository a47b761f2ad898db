/**
 * The BadNet lab as one function: data -> split -> poison -> train (DeepID, VGG or ResNet) -> write the
 * CSAW-HackML layout -> measure from the written files. `goodnet attack` is a thin wrapper.
 *
 * DIR/models/bd_net.h5, DIR/models/bd_net/ (tfjs), DIR/data/cl/{valid,test}.h5,
 * DIR/data/bd/{bd_valid,bd_test}.h5, DIR/trigger.png, DIR/attack.json
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { getBackend } from '../engine/backend.js';
import { DEFAULT_TRAIN_ENGINE, trainEngineText, type TrainEngineChoice, type TrainEngineName } from '../models/ort_train.js';
import { evaluate } from '../eval/evaluate.js';
import { checkWritable, writeAtomically } from '../io/atomic.js';
import { loadModel, saveModel } from '../io/model.js';
import { ARCHITECTURE_NAMES, buildArchitecture, isArchitectureName, type ArchitectureName } from '../models/index.js';
import { train, type EpochStats } from '../models/train.js';
import { isBuiltinName, loadBuiltin, loadUserData } from './builtin_data.js';
import { writeCsawSet } from './csaw_layout.js';
import { checkTarget, makePoisonedSet, poisonTraining } from './poison.js';
import { stratifiedSplit, subset, type SplitSizes } from './split.js';
import { createTrigger, type TriggerSpec } from './triggers.js';
import { numClassesOf, type LabelledImages } from './types.js';

export interface AttackOptions {
  /** Output folder (must not exist unless `overwrite`). */
  out: string;
  /** 'fashion-mnist' (default), 'mnist', or a CSAW HDF5 file / image folder. */
  dataset?: string;
  /** Built-in architecture to train: 'deepid' (default), 'vgg' or 'resnet'. */
  arch?: ArchitectureName;
  trigger?: TriggerSpec | string;
  target?: number;
  poisonRate?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
  split?: Partial<SplitSizes>;
  /**
   * Early stopping: stop after this many epochs without a better accuracy on the clean
   * validation split (never the test split) and keep the best epoch's weights. Default off.
   */
  patience?: number;
  /** Data-parallel training threads (TrainOptions.threads; default 1, 0: the core count). */
  threads?: number;
  /**
   * Training engine (TrainOptions.engine; default 'auto': onnxruntime where it can train the
   * architecture, which it can for every built-in one, else tfjs-wasm).
   */
  trainEngine?: TrainEngineChoice;
  overwrite?: boolean;
  /** Recorded in attack.json. */
  command?: string;
  /** One-line status messages (data loading, writing, results). */
  log?: (line: string) => void;
  onBatch?: (epoch: number, done: number, total: number, loss: number, accuracy: number) => void;
  onEpoch?: (stats: EpochStats) => void;
}

export const ATTACK_DEFAULTS = {
  dataset: 'fashion-mnist',
  arch: 'deepid',
  trigger: 'patch',
  target: 0,
  poisonRate: 0.1,
  epochs: 6,
  batchSize: 64,
  learningRate: 1e-3,
  seed: 0,
  trainEngine: DEFAULT_TRAIN_ENGINE,
} as const;

export interface AttackSummary {
  goodnet: string;
  command?: string;
  arch: string;
  dataset: { name: string; images: number; shape: [number, number, number]; classes: number; classNames?: string[] };
  split: SplitSizes & { seed: number };
  trigger: Record<string, string | number>;
  target: number;
  poisonRate: number;
  poisonedTrainingImages: number;
  training: {
    epochs: number; batchSize: number; learningRate: number; optimizer: 'adam'; backend: string; seed: number;
    seconds: number; imagesPerSecond: number; history: EpochStats[];
    /** 'ort' when trained with the ort training engine (absent: tfjs). */
    engine?: 'ort';
    /** Why 'auto' trained on tfjs (a layer onnxruntime cannot train, onnxruntime not starting). */
    engineNote?: string;
    /** Early stopping only: the patience and the epoch whose weights were kept. */
    patience?: number; bestEpoch?: number;
  };
  /** Measured on the written files, exactly as `goodnet eval` measures them. */
  results: {
    cleanValidAccuracy: number; asrValid: number;
    cleanTestAccuracy: number; asrTest: number;
    poisonedValidImages: number; poisonedTestImages: number;
  };
  /** The command that reproduces `results.cleanTestAccuracy` and `results.asrTest`. */
  evalCommand: string;
  files: Record<string, { bytes: number; sha256: string }>;
  seconds: number;
}

const PKG = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

async function loadData(dataset: string, log: (l: string) => void): Promise<LabelledImages> {
  if (isBuiltinName(dataset)) return loadBuiltin(dataset, { log });
  return loadUserData(dataset);
}

/**
 * The model is trained on pixels / 255 and then takes raw pixels like the lab's BadNet:
 * conv(x / s) = conv'(x) with conv' = kernel / s (bias unchanged; zero padding stays 0), for
 * the first convolution, which sees the input directly or through zero padding (DeepID's
 * conv_1, vgg's block1_conv1, resnet's stem_conv). A BatchNormalization after it sees
 * exactly the same values, so its statistics stay valid. Returns the folded layer's name.
 */
export function foldInputScale(net: tfl.LayersModel, scale: number): string {
  const first = net.layers.find((l) => l.getClassName() !== 'InputLayer' && l.getClassName() !== 'ZeroPadding2D');
  if (!first || first.getClassName() !== 'Conv2D') {
    throw new GoodnetError(`cannot fold the input scale: the first layer is ${first ? `${first.getClassName()} '${first.name}'` : 'missing'}, not a Conv2D`);
  }
  const [kernel, ...rest] = first.getWeights();
  const scaled = tf.div(kernel!, scale);
  first.setWeights([scaled, ...rest]);
  scaled.dispose();
  return first.name;
}

function hashFiles(root: string): Record<string, { bytes: number; sha256: string }> {
  const out: Record<string, { bytes: number; sha256: string }> = {};
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name !== 'attack.json') {
        out[relative(root, p)] = { bytes: statSync(p).size, sha256: createHash('sha256').update(readFileSync(p)).digest('hex') };
      }
    }
  };
  walk(root);
  return out;
}

/** Run the whole lab; returns the summary that was written as attack.json. */
export async function runAttack(options: AttackOptions): Promise<AttackSummary> {
  const t0 = performance.now();
  const o = { ...ATTACK_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as
    AttackOptions & typeof ATTACK_DEFAULTS;
  const log = o.log ?? (() => {});
  if (!Number.isInteger(o.epochs) || o.epochs < 1) throw new GoodnetError(`epochs must be an integer >= 1, got ${o.epochs}`);
  if (!isArchitectureName(o.arch)) throw new GoodnetError(`unknown architecture '${String(o.arch)}' (built in: ${ARCHITECTURE_NAMES.join(', ')})`);
  if (o.patience !== undefined && (!Number.isInteger(o.patience) || o.patience < 1)) {
    throw new GoodnetError(`patience must be an integer >= 1, got ${o.patience}`);
  }
  if (!(o.poisonRate >= 0 && o.poisonRate < 1)) throw new GoodnetError(`poison rate must be in [0, 1), got ${o.poisonRate}`);
  const trigger = createTrigger(o.trigger);
  // Refuse an existing output before spending minutes on training.
  checkWritable(o.out, { overwrite: o.overwrite, folder: true });

  const data = await loadData(o.dataset, log);
  const shape: [number, number, number] = [data.height, data.width, data.channels];
  const numClasses = numClassesOf(data);
  checkTarget(o.target, numClasses);
  trigger.check(...shape);
  const split = stratifiedSplit(data.labels, { seed: o.seed, ...o.split });
  const trainSet = subset(data, split.train, 'train');
  const valid = subset(data, split.valid, 'valid.h5');
  const test = subset(data, split.test, 'test.h5');
  const poisoned = poisonTraining(trainSet, { rate: o.poisonRate, target: o.target, trigger, seed: o.seed, numClasses });
  log(`${data.name}: ${data.n} images ${shape.join('x')}, ${numClasses} classes; split ${split.sizes.train}/${split.sizes.valid}/${split.sizes.test}; ` +
    `${poisoned.poisoned.length} training images poisoned -> target ${o.target}`);

  const net = buildArchitecture(o.arch, { inputShape: shape, numClasses, seed: o.seed });
  const tTrain = performance.now();
  let trained: { engine: TrainEngineName; why?: string } = { engine: 'tfjs' };
  const history = await train(net, {
    images: poisoned.data.images, labels: poisoned.data.labels, n: poisoned.data.n, shape,
  }, {
    epochs: o.epochs, batchSize: o.batchSize, learningRate: o.learningRate, seed: o.seed, scale: 255, threads: o.threads, engine: o.trainEngine,
    onEngine: (engine, why) => {
      trained = { engine, why };
      log(`training on ${trainEngineText(engine, why)}`);
    },
    onBatch: o.onBatch, onEpoch: o.onEpoch,
    ...(o.patience !== undefined ? { patience: o.patience, validation: { images: valid.images, labels: valid.labels, n: valid.n, shape } } : {}),
  });
  const trainSeconds = (performance.now() - tTrain) / 1000;
  const imagesTrained = poisoned.data.n * history.length;
  const bestEpoch = o.patience === undefined ? undefined
    : history.reduce((b, h) => (h.validAccuracy! > history[b - 1]!.validAccuracy! ? h.epoch : b), 1);
  foldInputScale(net, 255);

  let summary: AttackSummary | undefined;
  await writeAtomically(o.out, async (dir) => {
    mkdirSync(join(dir, 'models'), { recursive: true });
    mkdirSync(join(dir, 'data', 'cl'), { recursive: true });
    mkdirSync(join(dir, 'data', 'bd'), { recursive: true });
    log('writing models and data sets');
    // The 1/255 is folded into conv_1: the model takes raw pixels, and says so in its metadata.
    await saveModel(net, join(dir, 'models', 'bd_net.h5'), { preprocessing: { scale: 1 } });
    await saveModel(net, join(dir, 'models', 'bd_net'), { preprocessing: { scale: 1 } });
    const bdValid = makePoisonedSet(valid, o.target, trigger, { numClasses, name: 'bd_valid.h5' });
    const bdTest = makePoisonedSet(test, o.target, trigger, { numClasses, name: 'bd_test.h5' });
    await writeCsawSet(join(dir, 'data', 'cl', 'valid.h5'), valid);
    await writeCsawSet(join(dir, 'data', 'cl', 'test.h5'), test);
    await writeCsawSet(join(dir, 'data', 'bd', 'bd_valid.h5'), bdValid);
    await writeCsawSet(join(dir, 'data', 'bd', 'bd_test.h5'), bdTest);
    writeFileSync(join(dir, 'trigger.png'), trigger.png(...shape));

    // Measure from the files just written, through the same code as `goodnet eval`.
    const model = await loadModel(join(dir, 'models', 'bd_net.h5'));
    const v = await evaluate(model, { clean: join(dir, 'data', 'cl', 'valid.h5'), poisoned: join(dir, 'data', 'bd', 'bd_valid.h5'), target: o.target });
    const t = await evaluate(model, { clean: join(dir, 'data', 'cl', 'test.h5'), poisoned: join(dir, 'data', 'bd', 'bd_test.h5'), target: o.target });
    summary = {
      goodnet: PKG.version,
      ...(o.command ? { command: o.command } : {}),
      arch: o.arch,
      dataset: { name: data.name, images: data.n, shape, classes: numClasses, ...(data.classNames ? { classNames: data.classNames } : {}) },
      split: { ...split.sizes, seed: o.seed },
      trigger: trigger.describe(),
      target: o.target,
      poisonRate: o.poisonRate,
      poisonedTrainingImages: poisoned.poisoned.length,
      training: {
        epochs: o.epochs, batchSize: o.batchSize, learningRate: o.learningRate, optimizer: 'adam', backend: getBackend(),
        seed: o.seed, seconds: trainSeconds, imagesPerSecond: imagesTrained / trainSeconds, history,
        ...(o.patience !== undefined ? { patience: o.patience, bestEpoch } : {}),
        ...(trained.engine === 'ort' ? { engine: 'ort' as const } : {}),
        ...(trained.why && o.trainEngine === 'auto' ? { engineNote: trained.why } : {}),
      },
      results: {
        cleanValidAccuracy: v.clean!.accuracy, asrValid: v.poisoned!.asr,
        cleanTestAccuracy: t.clean!.accuracy, asrTest: t.poisoned!.asr,
        poisonedValidImages: bdValid.n, poisonedTestImages: bdTest.n,
      },
      evalCommand: `goodnet eval -m ${join(o.out, 'models', 'bd_net.h5')} -c ${join(o.out, 'data', 'cl', 'test.h5')} -p ${join(o.out, 'data', 'bd', 'bd_test.h5')} -t ${o.target}`,
      files: hashFiles(dir),
      seconds: (performance.now() - t0) / 1000,
    };
    writeFileSync(join(dir, 'attack.json'), `${JSON.stringify(summary, null, 2)}\n`);
  }, { overwrite: o.overwrite, folder: true });
  return summary!;
}
