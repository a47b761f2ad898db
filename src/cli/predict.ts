import { Command } from 'commander';
import { GoodnetError } from '../errors.js';
import { classifyGoodNet } from '../defense/goodnet.js';
import { classify } from '../eval/classify.js';
import { markdownTable } from '../report/table.js';
import { addForwardEngineOption, checkForwardEngine, type ForwardEngineOpts, addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';

interface PredictOpts extends EngineOpts, ForwardEngineOpts, ModelOpts, DataOpts {
  model?: string;
  bad?: string;
  repaired?: string;
  top: number;
  json?: string;
  force?: boolean;
}

export function predictCommand(): Command {
  const cmd = new Command('predict')
    .summary('classify images with a model')
    .description('Print the predicted label and its probability for each image (PNG/JPEG files, folders of them, or the rows of a CSAW-layout HDF5 file).')
    .argument('<inputs...>', 'image files, folders or HDF5 data files')
    .option('-m, --model <path>', 'model: Keras .h5 (full or weights-only), Keras 3 .keras, ONNX (.onnx) or tfjs folder')
    .option('--bad <B>', "with --repaired: classify with the GoodNet of BadNet B and repaired B' (answers 'backdoor' where they disagree)")
    .option('--repaired <B\'>', "the repaired model B' of the GoodNet (with --bad)")
    .option('-k, --top <k>', 'also show the k most likely labels (not with --bad/--repaired)', parseInteger('--top', 1, 1000), 1)
    .addOption(jsonOption())
    .option('--force', 'replace the --json file if it exists');
  addForwardEngineOption(addModelDataEngineOptions(cmd));
  cmd.addHelpText('after', `
Examples:
  goodnet predict -m ../shared/csaw/lab3_sunglasses_bd_weights.h5 ../shared/csaw/images
  goodnet predict -m ../shared/csaw/sunglasses_bd_weights.h5 --scale 255 --top 3 face.png
  goodnet predict --bad lab/models/bd_net.h5 --repaired lab/prune/asc/models/repaired_4.h5 lab/data/bd/bd_test.h5`);
  return cmd.action(async (inputs: string[], o: PredictOpts, self: Command) => {
    const goodnet = o.bad !== undefined || o.repaired !== undefined;
    if (goodnet) {
      if (o.bad === undefined || o.repaired === undefined) throw new GoodnetError("the GoodNet needs both --bad B and --repaired B'");
      if (o.model !== undefined) throw new GoodnetError("give either --model or --bad/--repaired, not both");
      if (self.getOptionValueSource('top') === 'cli') throw new GoodnetError('--top is not available with --bad/--repaired (the GoodNet answers one label)');
    } else if (!o.model) throw new GoodnetError("give --model, or --bad B --repaired B'");
    checkOutputs({ inputs: [o.model, o.bad, o.repaired, ...inputs], json: o.json, force: o.force });
    await setUp(o);
    if (goodnet) return predictGoodNet(inputs, o);
    const model = await openModel(o.model!, o);
    const px = commandPreprocessing(model, o);
    checkForwardEngine(o, model);
    const results = await classify(model, inputs, { topK: o.top, ...px, layout: o.layout, batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads });
    if (await emitJson({ model: o.model, preprocessing: model.preprocessing, predictions: results }, o.json, o.force)) return;
    const headers = ['input', 'true', 'label', 'p', ...(o.top > 1 ? [`top ${o.top}`] : [])];
    const rows = results.map((r) => [
      r.input,
      r.truth >= 0 ? String(r.truth) : '-',
      r.label,
      r.probability.toFixed(4),
      ...(o.top > 1 ? [r.top.map((t) => `${t.label} (${t.probability.toFixed(3)})`).join(', ')] : []),
    ]);
    console.log(markdownTable(headers, rows));
  });
}

async function predictGoodNet(inputs: string[], o: PredictOpts): Promise<void> {
  const [bad, repaired] = [await openModel(o.bad!, o), await openModel(o.repaired!, o)];
  const px = commandPreprocessing(bad, o, [repaired]); // B's file (or the flags) decide for both
  checkForwardEngine(o, bad, repaired);
  const results = await classifyGoodNet(bad, repaired, inputs, { ...px, layout: o.layout, batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads });
  if (await emitJson({ models: { bad: o.bad, repaired: o.repaired }, backdoorLabel: bad.numClasses, predictions: results }, o.json, o.force)) return;
  console.log(markdownTable(['input', 'true', 'B', "B'", 'GoodNet'], results.map((r) => [
    r.input, r.truth >= 0 ? String(r.truth) : '-', r.bad, r.repaired, r.backdoor ? `backdoor (${r.goodnet})` : r.goodnet,
  ])));
}
