import { Command, Option } from 'commander';
import { DEFAULT_TRAIN_ENGINE, TRAIN_ENGINES, trainEngineText, type TrainEngineChoice, type TrainEngineName } from '../models/ort_train.js';
import { FINE_TUNE_DEFAULTS, runFinePrune, type FineTuneEpoch } from '../defense/fineprune.js';
import { markdownTable, percent } from '../report/table.js';
import { bytesOf } from '../io/paths.js';
import { addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, parsePositive, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';
import { epochBars } from './progress.js';

interface FinePruneCliOpts extends EngineOpts, ModelOpts, DataOpts {
  model: string;
  cleanValid: string;
  cleanTest?: string;
  poisonedTest?: string;
  target?: number;
  layer?: string;
  pruneFraction?: number;
  epochs: number;
  lr: number;
  holdOut: number;
  seed: number;
  threads: number;
  trainEngine: TrainEngineChoice;
  out?: string;
  force?: boolean;
  json?: string;
}

/** Shared by `fineprune` and `prune --fine-tune`. */
export function fineTuneProgress() {
  return {
    onBatch: epochBars((epoch) => `fine-tune epoch ${epoch}`),
    onEpoch: (e: FineTuneEpoch) => process.stderr.write(`fine-tune epoch ${e.epoch}: held-out clean accuracy ${percent(e.heldOutAccuracy)}\n`),
    onEngine: (engine: TrainEngineName, why?: string) => process.stderr.write(`fine-tuning on ${trainEngineText(engine, why)}\n`),
  };
}

export function finepruneCommand(): Command {
  const d = FINE_TUNE_DEFAULTS;
  const cmd = new Command('fineprune')
    .summary('fine-pruning: fine-tune a pruned model on clean data, pruned channels held at zero')
    .description(
      'Fine-pruning (Liu, Dolan-Gavitt and Garg, RAID 2018). Takes a pruned model B\'_X (its all-zero channels of the ' +
      'pruned conv layer stay zero: they are re-zeroed after every optimizer step), or a BadNet B with --prune-fraction ' +
      '(pruned in ascending order of mean activation over the clean validation set first), and fine-tunes all weights ' +
      'with Adam on the clean validation set. A held-out part of that set chooses the epoch (by clean accuracy). ' +
      'With test sets, prints clean accuracy and ASR before and after.')
    .requiredOption('-m, --model <path>', "the pruned model B'_X (or B with --prune-fraction)")
    .requiredOption('--clean-valid <path>', 'clean data to fine-tune on')
    .option('--clean-test <path>', 'clean test data')
    .option('--poisoned-test <path>', 'poisoned test data')
    .option('-t, --target <label>', "the attacker's target label (with the test sets)", parseInteger('--target', 0))
    .option('--layer <name>', 'the prune point, as for goodnet prune (default: the last conv block before the classifier head)')
    .option('--prune-fraction <f>', 'prune this share of the channels first (ascending mean activation)', parsePositive('--prune-fraction'))
    .option('-e, --epochs <n>', 'fine-tuning epochs', parseInteger('--epochs', 1, 1000), d.epochs)
    .option('--lr <x>', 'Adam learning rate', parsePositive('--lr'), d.learningRate)
    .option('--hold-out <f>', 'share of the clean data held out to choose the epoch', parsePositive('--hold-out'), d.holdOut)
    .option('--seed <n>', 'seed for the hold-out split and shuffling', parseInteger('--seed'), d.seed)
    .option('--threads <n>', 'data-parallel training threads, one engine each (tfjs-wasm, or an onnxruntime session on the ort engine; default 1; 0: the core count; deterministic per seed and thread count; weights differ from 1 thread by float rounding and, with BatchNormalization, by per-thread batch statistics)', parseInteger('--threads', 0, 256), 1)
    .addOption(new Option('--train-engine <name>', 'training engine: auto (the default: ort where it can train the model, else tfjs, and it says which), ort (forward + backward as one onnxruntime-node graph, several times faster: see README "Performance"; Conv2D and DepthwiseConv2D (dilated too), Dense, BatchNormalization, ReLU, ReLU6, LeakyReLU, PReLU, ELU, sigmoid, tanh, swish, hard sigmoid/swish, Clip, pooling, Add, Multiply, Concatenate, Flatten, padding, Rescaling, Dropout) or tfjs (tfjs-wasm: any layer tfjs-layers has; the engine that made the lab models README measures)').choices(TRAIN_ENGINES).default(DEFAULT_TRAIN_ENGINE))
    .option('-o, --out <path>', 'save the fine-pruned model (.keras for Keras 3, .h5 for Keras HDF5, .onnx for ONNX, else a tfjs folder)')
    .option('--force', 'replace --out if it exists')
    .addOption(jsonOption());
  addModelDataEngineOptions(cmd);
  cmd.addHelpText('after', `
Examples:
  goodnet fineprune -m demo/prune/asc/models/repaired_4.h5 --clean-valid demo/lab/data/cl/valid.h5 \\
      --clean-test demo/lab/data/cl/test.h5 --poisoned-test demo/lab/data/bd/bd_test.h5 -t 0 -o fp_4.h5
  goodnet fineprune -m bd_net.h5 --prune-fraction 0.6 --clean-valid cl/valid.h5 -o fp.h5`);
  return cmd.action(async (o: FinePruneCliOpts) => {
    checkOutputs({ inputs: [o.model, o.cleanValid, o.cleanTest, o.poisonedTest], json: o.json, out: o.out, force: o.force, outBytes: bytesOf(o.model) });
    await setUp(o);
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    const r = await runFinePrune({
      model, cleanValid: o.cleanValid, cleanTest: o.cleanTest, poisonedTest: o.poisonedTest, target: o.target, layer: o.layer,
      pruneFraction: o.pruneFraction, ...px, epochs: o.epochs, learningRate: o.lr, holdOut: o.holdOut, seed: o.seed, threads: o.threads, trainEngine: o.trainEngine,
      layout: o.layout, batchSize: o.batchSize ?? 64, out: o.out, overwrite: o.force, ...fineTuneProgress(),
    });
    if (await emitJson({ ...r, preprocessing: model.preprocessing }, o.json, o.force)) return;
    console.log(`${r.conv}: ${r.pruned.length} channels held at zero; kept epoch ${r.fineTune.bestEpoch} of ${o.epochs} (${r.fineTune.seconds.toFixed(0)} s)`);
    if (r.before && r.after) {
      console.log(`\n${markdownTable(['model', 'clean test accuracy', 'ASR'], [
        ['before (pruned)', percent(r.before.accuracy), percent(r.before.asr)],
        ['after (fine-pruned)', percent(r.after.accuracy), percent(r.after.asr)],
      ])}`);
    }
    if (o.out) console.log(`\nwrote ${o.out}`);
  });
}
