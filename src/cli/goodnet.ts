import { Command } from 'commander';
import { evaluateGoodNet } from '../defense/goodnet.js';
import { markdownTable, percent } from '../report/table.js';
import { addForwardEngineOption, checkForwardEngine, type ForwardEngineOpts, addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';

interface GoodNetCliOpts extends EngineOpts, ForwardEngineOpts, ModelOpts, DataOpts {
  bad: string;
  repaired: string;
  cleanTest: string;
  poisonedTest: string;
  target: number;
  json?: string;
  force?: boolean;
}

export function goodnetCommand(): Command {
  const cmd = new Command('goodnet')
    .summary('measure the GoodNet made of a BadNet B and a repaired B\'')
    .description(
      'G(x) = B(x) where B and the repaired model B\' agree, else class N ("backdoor detected"; N+1 counting from 1). ' +
      'Prints clean test accuracy and ASR of B, of B\' and of G, G\'s detection rate (poisoned inputs answered N) and ' +
      'false-alarm rate (clean inputs answered N). B\' must have B\'s architecture (e.g. a model written by `goodnet prune`).')
    .requiredOption('--bad <path>', 'the BadNet B')
    .requiredOption('--repaired <path>', "the repaired model B'")
    .requiredOption('--clean-test <path>', 'clean test data')
    .requiredOption('--poisoned-test <path>', 'poisoned test data')
    .requiredOption('-t, --target <label>', "the attacker's target label", parseInteger('--target', 0))
    .addOption(jsonOption())
    .option('--force', 'replace the --json file if it exists');
  addForwardEngineOption(addModelDataEngineOptions(cmd));
  cmd.addHelpText('after', `
Example:
  goodnet goodnet --bad lab/models/bd_net.h5 --repaired lab/prune/asc/models/repaired_4.h5 \\
      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0`);
  return cmd.action(async (o: GoodNetCliOpts) => {
    checkOutputs({ inputs: [o.bad, o.repaired, o.cleanTest, o.poisonedTest], json: o.json, force: o.force });
    await setUp(o);
    const bad = await openModel(o.bad, o);
    const repaired = await openModel(o.repaired, o);
    const px = commandPreprocessing(bad, o, [repaired]); // B and B' take the same input: B's file (or the flags) decide
    checkForwardEngine(o, bad, repaired);
    const r = await evaluateGoodNet({ bad, repaired, cleanTest: o.cleanTest, poisonedTest: o.poisonedTest, target: o.target,
      ...px, layout: o.layout, batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads });
    if (await emitJson({ models: { bad: o.bad, repaired: o.repaired }, target: o.target, preprocessing: bad.preprocessing, ...r }, o.json, o.force)) return;
    console.log(markdownTable(['model', 'clean accuracy', 'ASR', 'detection', 'false alarm'], [
      ['B (BadNet)', percent(r.bad.accuracy), percent(r.bad.asr), '-', '-'],
      ["B' (repaired)", percent(r.repaired.accuracy), percent(r.repaired.asr), '-', '-'],
      ['G (GoodNet)', percent(r.goodnet.accuracy), percent(r.goodnet.asr), percent(r.goodnet.detectionRate), percent(r.goodnet.falseAlarmRate)],
    ]));
  });
}
