import { Command } from 'commander';
import { evaluate } from '../eval/evaluate.js';
import { markdownTable, percent } from '../report/table.js';
import { addForwardEngineOption, checkForwardEngine, type ForwardEngineOpts, addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, progress, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';

interface EvalOpts extends EngineOpts, ForwardEngineOpts, ModelOpts, DataOpts {
  model: string;
  clean?: string;
  poisoned?: string;
  target?: number;
  json?: string;
  force?: boolean;
}

export function evalCommand(): Command {
  const cmd = new Command('eval')
    .summary('clean accuracy and attack success rate of a model')
    .description(
      'Measure a model on clean data (accuracy) and on poisoned data (attack success rate, ASR: ' +
      'the share of triggered images classified as the attacker\'s target, counting only images ' +
      'whose true label is not the target).\n\n' +
      'Data: CSAW-layout HDF5 (`data` + `label`) or a folder of images labelled by sub-folder or ' +
      'file name (cl_0-label43.png).')
    .requiredOption('-m, --model <path>', 'model: Keras .h5 (full or weights-only), ONNX (.onnx) or tfjs folder')
    .option('-c, --clean <path>', 'clean data (HDF5 or image folder)')
    .option('-p, --poisoned <path>', 'poisoned data (HDF5 or image folder)')
    .option('-t, --target <label>', "attacker's target label (required with --poisoned)", parseInteger('--target', 0))
    .addOption(jsonOption())
    .option('--force', 'replace the --json file if it exists');
  addForwardEngineOption(addModelDataEngineOptions(cmd));
  cmd.addHelpText('after', `
Examples:
  goodnet eval -m ../shared/csaw/lab3_sunglasses_bd_weights.h5 -c ../shared/csaw/images
  goodnet eval -m models/bd_net.h5 -c data/cl/test.h5 -p data/bd/bd_test.h5 -t 0 --json result.json
  goodnet eval -m models/bd_net.h5 -c data/cl/test.h5 --json -        # JSON on stdout`);
  return cmd.action(async (o: EvalOpts) => {
    checkOutputs({ inputs: [o.model, o.clean, o.poisoned], json: o.json, force: o.force });
    await setUp(o);
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    checkForwardEngine(o, model);
    const r = await evaluate(model, {
      clean: o.clean, poisoned: o.poisoned, target: o.target, ...px, layout: o.layout, batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads,
      onProgress: (set, d, t) => bars[set](d, t),
    });
    const printed = await emitJson({ ...r, backend: o.backend, engine: r.engine ?? o.engine, scale: px.scale, preprocessing: model.preprocessing }, o.json, o.force);
    if (printed) return;
    const rows: (string | number)[][] = [];
    if (r.clean) rows.push(['clean accuracy', percent(r.clean.accuracy), `${r.clean.correct}/${r.clean.count}`, r.clean.source]);
    if (r.poisoned) {
      const note = r.poisoned.labelsAreTarget ? ' (all labels = target)' : '';
      rows.push([`attack success rate (target ${r.poisoned.target})`, percent(r.poisoned.asr), `${r.poisoned.hits}/${r.poisoned.count}`, r.poisoned.source + note]);
    }
    console.log(markdownTable(['metric', 'value', 'images', 'data'], rows));
  });
}

const bars = { clean: progress('clean'), poisoned: progress('poisoned') };
