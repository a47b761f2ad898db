import { Command, InvalidArgumentError, Option } from 'commander';
import { ATTACK_DEFAULTS, runAttack, type AttackSummary } from '../attack/lab.js';
import { triggerSpecFromOptions, CORNERS, PATCH_PATTERNS, TRIGGER_KINDS } from '../attack/triggers.js';
import { markdownTable, percent } from '../report/table.js';
import { existsSync } from 'node:fs';
import { checkOutputs, emitJson, jsonOption, parseInteger, parsePositive, setUp, type EngineOpts } from './common.js';
import { epochBars } from './progress.js';
import type { EpochStats } from '../models/train.js';
import { BACKENDS } from '../engine/backend.js';
import { DEFAULT_TRAIN_ENGINE, TRAIN_ENGINES, type TrainEngineChoice } from '../models/ort_train.js';
import { ARCHITECTURE_NAMES, type ArchitectureName } from '../models/index.js';

interface AttackCliOpts extends Omit<EngineOpts, 'batchSize'> {
  out: string;
  dataset: string;
  arch: ArchitectureName;
  patience?: number;
  threads: number;
  trainEngine: TrainEngineChoice;
  trigger: string;
  triggerSize?: string; triggerCorner?: string; triggerMargin?: string; triggerPattern?: string; triggerValue?: string;
  triggerAlpha?: string; triggerSeed?: string; triggerImage?: string; triggerX?: string; triggerY?: string;
  target: number;
  poisonRate: number;
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  trainSize?: number; validSize?: number; testSize?: number;
  force?: boolean;
  json?: string;
}

function parseRate(v: string): number {
  const n = Number(v);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`--poison-rate must be in [0, 1), got '${v}'`);
  return n;
}

export function attackCommand(): Command {
  const d = ATTACK_DEFAULTS;
  const cmd = new Command('attack')
    .summary('make a BadNet: poison a data set, train DeepID, VGG or ResNet, write the CSAW lab layout')
    .description(
      'Build a real backdoored model to study: poison a share of the training images (stamp the trigger, ' +
      'relabel them as the target), train a network sized to the data with Adam (--arch: the lab\'s DeepID, ' +
      'a small VGG or a small ResNet, both with batch normalisation), and write ' +
      'everything in the CSAW-HackML layout so every other goodnet command runs on it as on the lab\'s files:\n\n' +
      '  DIR/models/bd_net.h5, DIR/models/bd_net/   the BadNet (Keras HDF5, tfjs)\n' +
      '  DIR/data/cl/valid.h5, test.h5              clean validation and test sets\n' +
      '  DIR/data/bd/bd_valid.h5, bd_test.h5        triggered copies of the clean images not of the target class, TRUE labels\n' +
      '  DIR/trigger.png, DIR/attack.json           the trigger, and what was done and measured\n\n' +
      'The model takes raw pixels (0..255), like the lab\'s. Same seed, same backend: same split, same poisoned images, same weights.')
    .requiredOption('-o, --out <dir>', 'output folder (must not exist, unless --force)')
    .option('--dataset <name|path>', 'fashion-mnist (built in, 70,000 images), mnist (built in, 10,000), or a CSAW HDF5 file / image folder', d.dataset)
    .addOption(new Option('--arch <name>', 'deepid (the CSAW lab\'s face net), vgg ([conv-BN-ReLU]x2-pool blocks, dense head), resnet (residual blocks, global average pooling)').choices(ARCHITECTURE_NAMES).default(d.arch))
    .addOption(new Option('--trigger <kind>', 'patch (BadNets square), blend (pattern mixed in with alpha), image (PNG with alpha pasted)').choices(TRIGGER_KINDS).default(d.trigger))
    .option('--trigger-size <px>', 'patch: side of the square (default 4)')
    .addOption(new Option('--trigger-corner <c>', 'patch: corner (default br)').choices(CORNERS))
    .option('--trigger-margin <px>', 'patch: distance from the image edges (default 1)')
    .addOption(new Option('--trigger-pattern <p>', 'patch: pattern (default checkerboard)').choices(PATCH_PATTERNS))
    .option('--trigger-value <v>', 'patch: value of a solid patch, 0..255 (default 255)')
    .option('--trigger-alpha <a>', 'blend: weight of the pattern, in (0, 1] (default 0.1)')
    .option('--trigger-seed <s>', 'blend: seed of the random pattern (default 0)')
    .option('--trigger-image <png>', 'blend: image to blend; image: PNG with alpha to paste')
    .option('--trigger-x <px>', 'image: column of the pasted image\'s top-left corner (default 0)')
    .option('--trigger-y <px>', 'image: row of the pasted image\'s top-left corner (default 0)')
    .option('-t, --target <label>', 'the attacker\'s target label', parseInteger('--target', 0), d.target)
    .option('--poison-rate <r>', 'share of training images to poison, in [0, 1); 0 trains a clean control model the same way', parseRate, d.poisonRate)
    .option('-e, --epochs <n>', 'training epochs', parseInteger('--epochs', 1, 10000), d.epochs)
    .option('--batch-size <n>', 'training batch size', parseInteger('--batch-size', 1, 65536), d.batchSize)
    .option('--lr <x>', 'Adam learning rate', parsePositive('--lr'), d.learningRate)
    .option('--seed <n>', 'seed for split, poisoning, initial weights and shuffling', parseInteger('--seed'), d.seed)
    .option('--threads <n>', 'data-parallel training threads, one engine each (tfjs-wasm, or an onnxruntime session on the ort engine; default 1; 0: the core count; deterministic per seed and thread count; weights differ from 1 thread by float rounding and, with BatchNormalization, by per-thread batch statistics)', parseInteger('--threads', 0, 256), 1)
    .addOption(new Option('--train-engine <name>', 'training engine: auto (the default: ort where it can train the model, else tfjs, and it says which), ort (forward + backward as one onnxruntime-node graph, several times faster: see README "Performance"; Conv2D and DepthwiseConv2D (dilated too), Dense, BatchNormalization, ReLU, ReLU6, LeakyReLU, PReLU, ELU, sigmoid, tanh, swish, hard sigmoid/swish, Clip, pooling, Add, Multiply, Concatenate, Flatten, padding, Rescaling, Dropout) or tfjs (tfjs-wasm: any layer tfjs-layers has; the engine that made the lab models README measures)').choices(TRAIN_ENGINES).default(DEFAULT_TRAIN_ENGINE))
    .option('--patience <n>', 'early stopping: stop after n epochs without a better clean validation accuracy, keep the best epoch (default off)', parseInteger('--patience', 1))
    .option('--train-size <n>', 'training images (default: all but validation and test)', parseInteger('--train-size', 1))
    .option('--valid-size <n>', 'clean validation images (default: 15% of the data, at most 10,000)', parseInteger('--valid-size', 1))
    .option('--test-size <n>', 'clean test images (default: as validation)', parseInteger('--test-size', 1))
    .option('--force', 'replace DIR if it exists')
    .addOption(jsonOption('attack.json'))
    .addOption(new Option('--backend <name>', 'tensor backend').choices(BACKENDS).default('wasm'));
  cmd.addHelpText('after', `
Examples:
  goodnet attack --out lab                      # Fashion-MNIST, 4x4 checkerboard patch, target 0, 10% poisoned
  goodnet attack --out lab-resnet --arch resnet -e 3    # a small ResNet with batch normalisation
  goodnet attack --out lab --dataset mnist --trigger blend --trigger-alpha 0.2 --target 7
  goodnet attack --out faces --dataset faces/ --trigger image --trigger-image sunglasses.png --trigger-x 8 --trigger-y 14
  goodnet eval -m lab/models/bd_net.h5 -c lab/data/cl/test.h5 -p lab/data/bd/bd_test.h5 -t 0`);
  return cmd.action(async (o: AttackCliOpts) => {
    checkOutputs({ inputs: [existsSync(o.dataset) ? o.dataset : undefined, o.triggerImage], json: o.json, out: o.out, outFolder: true, force: o.force, outBytes: 8 << 20 });
    await setUp({ backend: o.backend, batchSize: o.batchSize });
    const trigger = triggerSpecFromOptions({
      trigger: o.trigger, size: o.triggerSize, corner: o.triggerCorner, margin: o.triggerMargin, pattern: o.triggerPattern,
      value: o.triggerValue, alpha: o.triggerAlpha, seed: o.triggerSeed, image: o.triggerImage, x: o.triggerX, y: o.triggerY,
    });
    const log = (line: string) => process.stderr.write(`${line}\n`);
    const summary = await runAttack({
      out: o.out, dataset: o.dataset, arch: o.arch, patience: o.patience, threads: o.threads, trainEngine: o.trainEngine, trigger, target: o.target, poisonRate: o.poisonRate, epochs: o.epochs,
      batchSize: o.batchSize, learningRate: o.lr, seed: o.seed, overwrite: o.force,
      command: ['goodnet', ...process.argv.slice(2)].join(' '),
      split: { train: o.trainSize, valid: o.validSize, test: o.testSize },
      log,
      ...trainingProgress(o.epochs),
    });
    if (await emitJson(summary, o.json, o.force)) return;
    printAttackSummary(summary, o.out);
  });
}

export function printAttackSummary(summary: AttackSummary, out: string): void {
  const r = summary.results;
  console.log(markdownTable(['set', 'clean accuracy', `ASR (target ${summary.target})`], [
    ['validation', percent(r.cleanValidAccuracy), percent(r.asrValid)],
    ['test', percent(r.cleanTestAccuracy), percent(r.asrTest)],
  ]));
  console.log(`\n${summary.arch}${summary.training.bestEpoch !== undefined ? ` (early stopping: kept epoch ${summary.training.bestEpoch} of ${summary.training.history.length})` : ''}; wrote ${out} in ${summary.seconds.toFixed(0)} s (training ${summary.training.seconds.toFixed(0)} s); check with:\n  ${summary.evalCommand}`);
}

/** Progress callbacks for training: a bar per epoch, then one line. */
export function trainingProgress(epochs: number) {
  return {
    onBatch: epochBars((epoch) => `epoch ${epoch}/${epochs}`),
    onEpoch: (s: EpochStats) => process.stderr.write(
      `epoch ${s.epoch}/${epochs}: loss ${s.loss.toFixed(4)}, train accuracy ${percent(s.accuracy)}, ${s.validAccuracy !== undefined ? `clean validation accuracy ${percent(s.validAccuracy)}, ` : ''}${s.seconds.toFixed(1)} s (${Math.round(s.imagesPerSecond)} images/s)\n`),
  };
}
