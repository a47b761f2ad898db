import { Command } from 'commander';
import { GoodnetError } from '../errors.js';
import { classifyGoodNet } from '../defense/goodnet.js';
import { classify } from '../eval/classify.js';
import { markdownTable } from '../report/table.js';
import { addModelDataEngineOptions, commandPreprocessing, emitJson, openModel, parseInteger, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';

interface PredictOpts extends EngineOpts, ModelOpts, DataOpts {
  model?: string;
  goodnet?: string[];
  top: number;
  json?: string | boolean;
}

export function predictCommand(): Command {
  const cmd = new Command('predict')
    .summary('classify images with a model')
    .description('Print the predicted label and its probability for each image (PNG/JPEG files, folders of them, or the rows of a CSAW-layout HDF5 file).')
    .argument('<inputs...>', 'image files, folders or HDF5 data files')
    .option('-m, --model <path>', 'model: Keras .h5 (full or weights-only), ONNX (.onnx) or tfjs folder')
    .option('--goodnet <models...>', "classify with the GoodNet of BadNet B and repaired B' (answers 'backdoor' where they disagree)")
    .option('-k, --top <k>', 'also show the k most likely labels', parseInteger('--top', 1, 1000), 1)
    .option('--json [file]', 'print JSON instead of the table, or write it to file');
  addModelDataEngineOptions(cmd);
  cmd.addHelpText('after', `
Examples:
  goodnet predict -m ../shared/csaw/lab3_sunglasses_bd_weights.h5 ../shared/csaw/images
  goodnet predict -m ../shared/csaw/sunglasses_bd_weights.h5 --scale 255 --top 3 face.png
  goodnet predict lab/data/bd/bd_test.h5 --goodnet lab/models/bd_net.h5 lab/prune/asc/models/repaired_4.h5`);
  return cmd.action(async (inputs: string[], o: PredictOpts) => {
    await setUp(o);
    if (o.goodnet) return predictGoodNet(inputs, o);
    if (!o.model) throw new GoodnetError("give --model, or --goodnet B B'");
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    const results = await classify(model, inputs, { topK: o.top, ...px, layout: o.layout, batchSize: o.batchSize });
    if (await emitJson({ model: o.model, preprocessing: model.preprocessing, predictions: results }, o.json)) return;
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
  if (o.goodnet!.length !== 2) throw new GoodnetError(`--goodnet takes two models (B and B'), got ${o.goodnet!.length}`);
  const [bad, repaired] = [await openModel(o.goodnet![0]!, o), await openModel(o.goodnet![1]!, o)];
  const px = commandPreprocessing(bad!, o, [repaired!]); // B's file (or the flags) decide for both
  const results = await classifyGoodNet(bad!, repaired!, inputs, { ...px, layout: o.layout, batchSize: o.batchSize });
  if (await emitJson({ models: { bad: o.goodnet![0], repaired: o.goodnet![1] }, backdoorLabel: bad.numClasses, predictions: results }, o.json)) return;
  console.log(markdownTable(['input', 'true', 'B', "B'", 'GoodNet'], results.map((r) => [
    r.input, r.truth >= 0 ? String(r.truth) : '-', r.bad, r.repaired, r.backdoor ? `backdoor (${r.goodnet})` : r.goodnet,
  ])));
}
