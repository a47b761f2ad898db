import { Command } from 'commander';
import { BACKDOORBENCH_REFERENCE, comparisonTable, QUICK_DEFENSE_OPTIONS, runComparison } from '../defense/comparison.js';
import { registeredDefenses } from '../defense/registry.js';
import { markdownTable } from '../report/table.js';
import { addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, setUp, type DataOpts, type EngineOpts, type ModelOpts } from './common.js';
import { stageBars, trainEngineOption } from './defense_cli.js';
import type { TrainEngineChoice } from '../models/ort_train.js';

interface CompareCliOpts extends EngineOpts, ModelOpts, DataOpts {
  model: string;
  cleanValid: string;
  cleanImages?: number;
  cleanTest: string;
  poisonedTest: string;
  target: number;
  defenses?: string;
  seed: number;
  out?: string;
  force?: boolean;
  json?: string;
  quick?: boolean;
  trainEngine: TrainEngineChoice;
}

export function compareCommand(): Command {
  const names = registeredDefenses().map((d) => d.name);
  const cmd = new Command('compare')
    .summary('run every registered defense on one BadNet and compare them, as BackdoorBench does')
    .description(
      `Runs the registered defenses (${names.join(', ')}) on one model with the same clean data (--clean-valid, at most ` +
      '--clean-images of it), each with its default options, then measures every repaired model on the same test sets: ' +
      'clean accuracy, ASR, DER (BackdoorBench\'s defense effectiveness rating), clean images used, time. The test sets ' +
      'and --target only measure. With -o, writes DIR/comparison.{json,md}, DIR/<defense>.json and DIR/models/<defense>.h5.')
    .requiredOption('-m, --model <path>', 'the BadNet')
    .requiredOption('--clean-valid <path>', 'clean labelled data the defenses may use')
    .requiredOption('--clean-test <path>', 'clean test data (measuring)')
    .requiredOption('--poisoned-test <path>', 'poisoned test data (measuring)')
    .requiredOption('-t, --target <label>', "the attacker's target label (measuring)", parseInteger('--target', 0))
    .option('--clean-images <n>', 'use at most n clean images (a seeded random subset)', parseInteger('--clean-images', 2))
    .option('--defenses <list>', `comma-separated subset of: ${names.join(', ')}`)
    .option('--seed <n>', 'seed for sampling and initialisation', parseInteger('--seed'), 0)
    .option('-o, --out <dir>', 'write the comparison, each defense\'s JSON and repaired model here')
    .option('--quick', `the demo's quick settings: ${Object.entries(QUICK_DEFENSE_OPTIONS).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join('; ')} (others: defaults)`)
    .addOption(trainEngineOption())
    .option('--force', 'replace --out (and the --json file) if it exists')
    .addOption(jsonOption());
  addModelDataEngineOptions(cmd);
  cmd.addHelpText('after', `
Example:
  goodnet compare -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 \\
      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0 -o compare`);
  return cmd.action(async (o: CompareCliOpts) => {
    checkOutputs({ inputs: [o.model, o.cleanValid, o.cleanTest, o.poisonedTest], json: o.json, out: o.out, outFolder: true, force: o.force });
    await setUp(o);
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    const r = await runComparison({
      model, cleanValid: o.cleanValid, cleanImages: o.cleanImages, cleanTest: o.cleanTest, poisonedTest: o.poisonedTest, target: o.target,
      defenses: o.defenses?.split(',').map((s) => s.trim()), ...(o.quick ? { options: QUICK_DEFENSE_OPTIONS } : {}), ...px, layout: o.layout, batchSize: o.batchSize, seed: o.seed, trainEngine: o.trainEngine,
      out: o.out, overwrite: o.force, command: ['goodnet', ...process.argv.slice(2)].join(' '), log: (l) => process.stderr.write(`${l}\n`), onProgress: stageBars(),
      onDefense: (name, res) => process.stderr.write(res ? `${name}: done in ${res.seconds.toFixed(0)} s\n` : `${name}: running\n`),
    });
    if (await emitJson({ ...r, sections: undefined, preprocessing: model.preprocessing }, o.json, o.force)) return;
    const t = comparisonTable(r.rows);
    console.log(`\n${markdownTable(t.headers, t.rows)}`);
    console.log(`\nReference point, BackdoorBench (CIFAR-10, PreAct-ResNet18, BadNets 10%), clean accuracy / ASR:\n` +
      BACKDOORBENCH_REFERENCE.map((x) => `${x.defense} ${x.accuracy.toFixed(2)}/${x.asr.toFixed(2)}`).join(', '));
    if (o.out) console.log(`\nwrote ${o.out}`);
  });
}
