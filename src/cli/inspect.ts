import { Command } from 'commander';
import { inspectModel } from '../models/inspect.js';
import { markdownTable } from '../report/table.js';
import { addEngineOptions, addModelOptions, checkOutputs, emitJson, jsonOption, openModel, setUp, type EngineOpts, type ModelOpts } from './common.js';

interface InspectOpts extends EngineOpts, ModelOpts {
  model: string;
  json?: string;
  force?: boolean;
}

/** "0,1,2,3,7,8" -> "0-3,7-8": pruned channels read better as ranges. */
export function ranges(xs: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(j === i ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

export function inspectCommand(): Command {
  const cmd = new Command('inspect')
    .summary('layers of a model, and which conv channels are zero (pruned)')
    .description('Print the layer table (name, type, output shape, parameters) and, for every Conv2D layer, the output channels whose kernel slice and bias are entirely zero: what a pruned model has lost.')
    .requiredOption('-m, --model <path>', 'model: Keras .h5 (full or weights-only) or tfjs folder')
    .addOption(jsonOption())
    .option('--force', 'replace the --json file if it exists');
  addModelOptions(cmd);
  addEngineOptions(cmd);
  cmd.addHelpText('after', `
Example:
  goodnet inspect -m ../shared/csaw/lab3_repaired_2pct_full_model.h5`);
  return cmd.action(async (o: InspectOpts) => {
    checkOutputs({ inputs: [o.model], json: o.json, force: o.force });
    await setUp(o);
    const model = await openModel(o.model, o);
    const info = inspectModel(model.net);
    if (await emitJson({ model: o.model, format: model.format, ...info }, o.json, o.force)) return;
    console.log(`${o.model} (${model.format}): input ${model.inputShape.join('x')}, ${model.numClasses} classes, ${info.totalParams.toLocaleString('en-US')} parameters\n`);
    console.log(markdownTable(['layer', 'type', 'output shape', 'params'],
      info.layers.map((l) => [l.name, l.type, `(${l.outputShape.map((d) => d ?? 'N').join(', ')})`, l.params])));
    console.log('');
    console.log(markdownTable(['conv layer', 'channels', 'zeroed', 'zeroed channels'],
      info.convs.map((c) => [c.layer, c.channels, c.zeroChannels.length, c.zeroChannels.length ? ranges(c.zeroChannels) : '-'])));
  });
}
