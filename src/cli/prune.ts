import { Command, InvalidArgumentError, Option } from 'commander';
import { GoodnetError } from '../errors.js';
import { bytesOf } from '../io/paths.js';
import { ORDER_TITLE, PRUNE_DEFAULTS, runPrune, type PruneSummary } from '../defense/prune.js';
import { findCutPoint } from '../defense/graph.js';
import { markdownGoodNetTable } from '../report/html.js';
import type { PruneOrder, SweepStep, ThresholdRule } from '../defense/types.js';
import { markdownTable, percent } from '../report/table.js';
import { FINE_TUNE_DEFAULTS } from '../defense/fineprune.js';
import { DEFAULT_TRAIN_ENGINE, TRAIN_ENGINES, type TrainEngineChoice } from '../models/ort_train.js';
import { fineTuneProgress } from './fineprune.js';
import { addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, parsePositive, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';
import { ProgressBar, progress } from './progress.js';

interface PruneCliOpts extends EngineOpts, ModelOpts, DataOpts {
  model: string;
  cleanValid: string;
  poisonedValid: string;
  cleanTest?: string;
  poisonedTest?: string;
  target: number;
  order: 'asc' | 'desc' | 'both';
  thresholds: number[];
  rule: ThresholdRule;
  layer?: string;
  stopAt?: string;
  out: string;
  force?: boolean;
  json?: string;
  fineTune?: boolean;
  fineTuneOrder: 'asc' | 'desc' | 'both';
  fineTuneEpochs: number;
  fineTuneLr: number;
  trainEngine: TrainEngineChoice;
}

export function parseThresholds(v: string): number[] {
  const xs = v.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (xs.length === 0 || xs.some((x) => !(x > 0 && x < 100))) {
    throw new InvalidArgumentError(`--thresholds must be percentages in (0, 100), comma-separated (e.g. 2,4,10), got '${v}'`);
  }
  if (new Set(xs).size !== xs.length) throw new InvalidArgumentError(`--thresholds lists a percentage twice: '${v}'`);
  return xs;
}

/** "0.8" -> 80% of the channels, "48" -> 48 channels. */
function stopAtChannels(v: string | undefined, channels: number): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!(x > 0) || (x > 1 && !Number.isInteger(x))) {
    throw new GoodnetError(`--stop-at must be a fraction in (0, 1] or a whole number of channels, got '${v}'`);
  }
  return x <= 1 && v.includes('.') ? Math.max(1, Math.ceil(x * channels)) : Math.min(channels, x);
}

export function pruneCommand(): Command {
  const cmd = new Command('prune')
    .summary('the pruning defense: sweep, repaired models B\'_X, GoodNets')
    .description(
      'Record each channel\'s mean activation at the prune point (by default the output of the last convolutional ' +
      'block before the classifier head: the input of the last pooling layer, or a ResNet\'s last block output before ' +
      'global pooling; the log says which and why) over clean validation data, then prune its channels one at a time, in ascending order of mean activation (the defense) and ' +
      'descending (the control), recording clean validation accuracy and attack success rate after each step. ' +
      'For each threshold X, B\'_X is the first model whose accuracy dropped by at least X points. With test sets, ' +
      'each B\'_X and its GoodNet G_X (B\'s answer where B and B\'_X agree, else "backdoor", class N) are measured ' +
      'on test data, which is read only after every model is fixed.\n\n' +
      'The sweep runs the network once up to the prune point (or the pooling right after it) and re-evaluates only ' +
      'the layers after it per step, with the pruned channels masked to zero. Saved models compute the same: the ' +
      'conv (and batch-norm) weights of a pruned channel are zeroed, or the weights that read it, or a 1x1 ' +
      'depthwise mask layer is inserted after the prune point.')
    .requiredOption('-m, --model <path>', 'the BadNet B: Keras .h5 (full or weights-only), ONNX (.onnx) or tfjs folder')
    .requiredOption('--clean-valid <path>', 'clean validation data (designs the defense)')
    .requiredOption('--poisoned-valid <path>', 'poisoned validation data')
    .option('--clean-test <path>', 'clean test data (for the B\'_X and GoodNet tables)')
    .option('--poisoned-test <path>', 'poisoned test data')
    .requiredOption('-t, --target <label>', 'the attacker\'s target label', parseInteger('--target', 0))
    .requiredOption('-o, --out <dir>', 'output folder (must not exist, unless --force)')
    .addOption(new Option('--order <order>', 'pruning order').choices(['asc', 'desc', 'both']).default('both'))
    .option('--thresholds <list>', 'accuracy drops X in points at which to save B\'_X', parseThresholds, PRUNE_DEFAULTS.thresholds)
    .addOption(new Option('--rule <rule>', 'first-drop: first model that dropped >= X (the paper); last-within: the one before it').choices(['first-drop', 'last-within']).default('first-drop'))
    .option('--layer <name>', 'layer whose output channels are pruned (any layer with a 4-D output; a pooling layer means its input; default: the last conv block before the classifier head)')
    .option('--stop-at <n>', 'stop after this many channels (integer) or this fraction of them (e.g. 0.8)')
    .option('--fine-tune', "fine-prune every B'_X too: fine-tune on the clean validation set, pruned channels held at zero")
    .addOption(new Option('--fine-tune-order <order>', 'which orders to fine-prune').choices(['asc', 'desc', 'both']).default('asc'))
    .option('--fine-tune-epochs <n>', 'fine-tuning epochs', parseInteger('--fine-tune-epochs', 1, 1000), FINE_TUNE_DEFAULTS.epochs)
    .option('--fine-tune-lr <x>', 'fine-tuning Adam learning rate', parsePositive('--fine-tune-lr'), FINE_TUNE_DEFAULTS.learningRate)
    .addOption(new Option('--train-engine <name>', 'engine of --fine-tune: auto (ort where it can train the model, else tfjs), ort or tfjs (see goodnet fineprune --help)').choices(TRAIN_ENGINES).default(DEFAULT_TRAIN_ENGINE))
    .option('--force', 'replace the output folder if it exists')
    .addOption(jsonOption('summary.json'));
  addModelDataEngineOptions(cmd);
  cmd.addHelpText('after', `
Examples:
  goodnet prune -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --poisoned-valid lab/data/bd/bd_valid.h5 \\
      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0 -o lab/prune
  goodnet prune -m bd_weights.h5 --clean-valid cl/valid.h5 --poisoned-valid bd/bd_valid.h5 -t 0 --order asc --thresholds 1,2,5 -o out`);
  return cmd.action(async (o: PruneCliOpts) => {
    checkOutputs({ inputs: [o.model, o.cleanValid, o.poisonedValid, o.cleanTest, o.poisonedTest], json: o.json, out: o.out, outFolder: true, force: o.force,
      outBytes: bytesOf(o.model) * (o.order === 'both' ? 2 : 1) * o.thresholds.length });
    await setUp(o);
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    const orders: PruneOrder[] = o.order === 'both' ? ['asc', 'desc'] : [o.order];
    const s = await runPrune({
      model, cleanValid: o.cleanValid, poisonedValid: o.poisonedValid, cleanTest: o.cleanTest, poisonedTest: o.poisonedTest,
      target: o.target, out: o.out, orders, thresholds: o.thresholds, rule: o.rule, layer: o.layer,
      stopAt: stopAtChannels(o.stopAt, findCutPoint(model.net, o.layer, o.model).channels),
      overwrite: o.force, ...px, layout: o.layout, batchSize: o.batchSize,
      command: ['goodnet', ...process.argv.slice(2)].join(' '),
      log: (l) => process.stderr.write(`${l}\n`),
      ...pruneProgress(),
      fineTune: o.fineTune ? {
        orders: o.fineTuneOrder === 'both' ? ['asc', 'desc'] : [o.fineTuneOrder], epochs: o.fineTuneEpochs, learningRate: o.fineTuneLr, trainEngine: o.trainEngine,
        onEpoch: fineTuneProgress().onEpoch, onEngine: fineTuneProgress().onEngine,
      } : undefined,
    });
    if (await emitJson(s, o.json, o.force)) return;
    printPruneSummary(s, o.out);
  });
}

/** Progress callbacks for prune: a bar per data set while caching activations, one per sweep. */
export function pruneProgress() {
  let bar: ProgressBar | undefined;
  const acts = new Map<string, (d: number, t: number) => void>();
  return {
    onActivations: (set: string, d: number, t: number) => {
      if (!acts.has(set)) acts.set(set, progress(set));
      acts.get(set)!(d, t);
    },
    onStep: (order: PruneOrder, st: SweepStep, last: number) => {
      bar ??= new ProgressBar(`sweep ${order}`);
      bar.update(st.step, last, `accuracy ${percent(st.accuracy)}  ASR ${percent(st.asr)}`);
      if (st.step === last) {
        bar.finish(`sweep ${order}: ${last} channels pruned; accuracy ${percent(st.accuracy)}, ASR ${percent(st.asr)} at the end`);
        bar = undefined;
      }
    },
  };
}

export function printPruneSummary(s: PruneSummary, out: string): void {
  for (const sw of s.sweeps) {
    console.log(`\n${sw.order === 'asc' ? 'Ascending' : 'Descending'} order, validation (unpruned: accuracy ${percent(s.baseline.validAccuracy)}, ASR ${percent(s.baseline.validAsr)})\n`);
    console.log(markdownTable(['X (%)', 'step', 'pruned', 'accuracy', 'ASR', 'model'], sw.picks.map((p) => [
      p.threshold, p.step ?? 'not reached', p.step === null ? '-' : percent(p.fractionPruned, 1),
      p.step === null ? '-' : percent(p.validAccuracy), p.step === null ? '-' : percent(p.validAsr), p.model?.keras ?? '-',
    ])));
  }
  if (s.goodnet) {
    console.log(`\nBadNet on test: accuracy ${percent(s.baseline.testAccuracy!)}, ASR ${percent(s.baseline.testAsr!)}`);
    for (const ord of s.sweeps.map((w) => w.order)) console.log(`\n${ORDER_TITLE[ord]}\n\n${markdownGoodNetTable(s.goodnet, ord)}`);
  }
  if (s.finePrune?.length) {
    console.log(`\nFine-pruning (fine-tuned on clean validation data; epoch chosen on a held-out part)\n`);
    console.log(markdownTable(['order', 'X (%)', 'epoch kept', "B'_X accuracy", "B'_X ASR", 'FP_X accuracy', 'FP_X ASR'], s.finePrune.map((f) => [
      f.order, f.threshold, `${f.bestEpoch}/${f.epochs}`, f.before ? percent(f.before.accuracy) : '-', f.before ? percent(f.before.asr) : '-',
      f.after ? percent(f.after.accuracy) : '-', f.after ? percent(f.after.asr) : '-',
    ])));
  }
  console.log(`\nwrote ${out} (${s.timings.total!.toFixed(1)} s)`);
}
