import { Command } from 'commander';
import { classify } from '../eval/classify.js';
import { markdownTable } from '../report/table.js';
import { addDataOptions, addEngineOptions, addModelOptions, emitJson, openModel, parseInteger, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';

interface PredictOpts extends EngineOpts, ModelOpts, DataOpts {
  model: string;
  top: number;
  json?: string | boolean;
}

export function predictCommand(): Command {
  const cmd = new Command('predict')
    .summary('classify images with a model')
    .description('Print the predicted label and its probability for each image (PNG/JPEG files, folders of them, or the rows of a CSAW-layout HDF5 file).')
    .argument('<inputs...>', 'image files, folders or HDF5 data files')
    .requiredOption('-m, --model <path>', 'model: Keras .h5 (full or weights-only) or tfjs folder')
    .option('-k, --top <k>', 'also show the k most likely labels', parseInteger('--top', 1, 1000), 1)
    .option('--json [file]', 'print JSON instead of the table, or write it to file');
  addModelOptions(cmd);
  addDataOptions(cmd);
  addEngineOptions(cmd);
  cmd.addHelpText('after', `
Examples:
  goodnet predict -m ../shared/csaw/lab3_sunglasses_bd_weights.h5 ../shared/csaw/images
  goodnet predict -m ../shared/csaw/sunglasses_bd_weights.h5 --scale 255 --top 3 face.png`);
  return cmd.action(async (inputs: string[], o: PredictOpts) => {
    await setUp(o);
    const model = await openModel(o.model, o);
    const results = await classify(model, inputs, { topK: o.top, scale: o.scale, layout: o.layout, batchSize: o.batchSize });
    if (await emitJson({ model: o.model, predictions: results }, o.json)) return;
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
