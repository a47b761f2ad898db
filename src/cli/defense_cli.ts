/**
 * The command-line contract every model-repairing defense shares:
 *
 *   goodnet <defense> -m MODEL --clean-valid DATA -o OUT_MODEL [--json FILE]
 *                     [--clean-test C --poisoned-test P -t T]   (measure only)
 *                     [--clean-images N] [preprocessing and engine options]
 *
 * A defense's CLI file adds its own options and turns them into the defense's options.
 */
import { Command, Option } from 'commander';
import { TRAIN_ENGINES, type TrainEngineChoice } from '../models/ort_train.js';
import { runDefense, type RunDefenseResult } from '../defense/run.js';
import { getDefense, type ReportSection } from '../defense/interface.js';
import { markdownTable, percent } from '../report/table.js';
import { addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, setUp, type DataOpts, type EngineOpts, type ModelOpts } from './common.js';
import { bytesOf } from '../io/paths.js';
import { ProgressBar } from './progress.js';

export interface DefenseCliOpts extends EngineOpts, ModelOpts, DataOpts {
  model: string;
  cleanValid: string;
  cleanImages?: number;
  cleanTest?: string;
  poisonedTest?: string;
  target?: number;
  seed: number;
  out?: string;
  force?: boolean;
  json?: string;
  trainEngine?: TrainEngineChoice;
}

/** `--train-engine` of the commands whose defenses train (default tfjs: DefenseInput.trainEngine). */
export function trainEngineOption(): Option {
  return new Option('--train-engine <name>', 'engine of the training steps (fine-tuning, unlearning): tfjs (tfjs-wasm, the default here: the engine of the defenses\' recorded results), auto (onnxruntime where it can train the model, else tfjs) or ort (several times faster; see goodnet attack --help)').choices(TRAIN_ENGINES).default('tfjs');
}

/** A progress callback drawing one bar per stage. */
export function stageBars(): (stage: string, done: number, total: number, note?: string) => void {
  let bar: ProgressBar | undefined;
  let current = '';
  return (stage, done, total, note) => {
    if (stage !== current) {
      bar?.finish();
      bar = new ProgressBar(stage);
      current = stage;
    }
    bar!.update(done, total, note);
    if (done >= total) {
      bar!.finish();
      bar = undefined;
      current = '';
    }
  };
}

/** Print a report section's tables on stdout (the terminal form of the report). */
export function printSection(s: ReportSection): void {
  for (const t of s.text) console.log(t);
  for (const t of s.tables ?? []) console.log(`\n${t.caption ? `${t.caption}:\n\n` : ''}${markdownTable(t.headers, t.rows)}`);
}

export function printMeasured(r: RunDefenseResult): void {
  if (!r.before) return;
  console.log(`\n${markdownTable(['model', 'clean test accuracy', 'ASR'], [
    ['before (BadNet)', percent(r.before.accuracy), percent(r.before.asr)],
    ...(r.after ? [[`after (${r.defense})`, percent(r.after.accuracy), percent(r.after.asr)]] : []),
  ])}`);
}

/**
 * A subcommand for the registered defense `name`; `configure` adds its options, `options`
 * maps the parsed CLI options to the defense's. `outRequired`: -o must be given.
 */
export function defenseCommand<O extends DefenseCliOpts>(
  name: string,
  spec: {
    description: string;
    examples: string;
    outRequired: boolean;
    /** The defense has training steps: the command takes --train-engine. */
    trains?: boolean;
    configure: (cmd: Command) => Command;
    options: (o: O) => Record<string, unknown>;
    print?: (r: RunDefenseResult) => void;
    /** Extra top-level JSON fields. */
    json?: (r: RunDefenseResult) => Record<string, unknown>;
    /** Extra outputs after the run (e.g. trigger images), checked by `check` before it. */
    check?: (o: O) => void;
    write?: (o: O, section: ReportSection) => Promise<void>;
  },
): Command {
  const d = getDefense(name);
  let cmd = new Command(name)
    .summary(d.summary)
    .description(`${spec.description}\n\nPoisoned data and --target are optional and used only to measure the result (clean accuracy and ASR ` +
      'before and after, on the test sets); nothing the defense chooses depends on them.')
    .requiredOption('-m, --model <path>', 'the model to check and repair')
    .requiredOption('--clean-valid <path>', 'clean labelled data the defense may use');
  cmd = spec.outRequired
    ? cmd.requiredOption('-o, --out <path>', 'save the repaired model (.onnx for ONNX: the original graph when the model is ONNX; .keras for Keras 3; .h5 for Keras HDF5; else a tfjs folder)')
    : cmd.option('-o, --out <path>', 'save the repaired model (.onnx for ONNX: the original graph when the model is ONNX; .keras for Keras 3; .h5 for Keras HDF5; else a tfjs folder)');
  cmd = cmd
    .option('--clean-images <n>', 'use at most n clean images (a seeded random subset of --clean-valid)', parseInteger('--clean-images', 2))
    .option('--clean-test <path>', 'clean test data (measuring only)')
    .option('--poisoned-test <path>', 'poisoned test data (measuring only)')
    .option('-t, --target <label>', "the attacker's target label (measuring only)", parseInteger('--target', 0))
    .option('--seed <n>', 'seed for sampling and initialisation', parseInteger('--seed'), 0)
    .option('--force', 'replace --out (and the --json file) if it exists')
    .addOption(jsonOption());
  if (spec.trains) cmd = cmd.addOption(trainEngineOption());
  cmd = spec.configure(cmd);
  addModelDataEngineOptions(cmd);
  cmd.addHelpText('after', `\nExamples:\n${spec.examples}`);
  return cmd.action(async (o: O) => {
    spec.check?.(o);
    checkOutputs({ inputs: [o.model, o.cleanValid, o.cleanTest, o.poisonedTest], json: o.json, out: o.out, force: o.force, outBytes: bytesOf(o.model) });
    await setUp(o);
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    const { result, section } = await runDefense({
      defense: name, model, cleanValid: o.cleanValid, cleanImages: o.cleanImages, ...px, layout: o.layout, batchSize: o.batchSize,
      seed: o.seed, out: o.out, overwrite: o.force, cleanTest: o.cleanTest, poisonedTest: o.poisonedTest, target: o.target, trainEngine: o.trainEngine,
      options: spec.options(o), log: (l) => process.stderr.write(`${l}\n`), onProgress: stageBars(),
    });
    await spec.write?.(o, section);
    if (await emitJson({ ...(result.verdict ? { flagged: result.verdict.flagged } : {}), ...spec.json?.(result), ...result, preprocessing: model.preprocessing }, o.json, o.force)) return;
    printSection(section);
    spec.print?.(result);
    printMeasured(result);
    console.log(`\n${d.title}: ${result.cleanImages} clean images, ${result.seconds.toFixed(0)} s`);
    if (o.out) console.log(`wrote ${o.out}`);
  });
}
