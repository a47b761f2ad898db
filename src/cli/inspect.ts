import type { LayersModel } from '@tensorflow/tfjs-layers';
import { findCutPoint, maskLayerOf } from '../defense/graph.js';
import { prunedChannels } from '../defense/mask.js';
import { Command } from 'commander';
import { IDENTITY_PREPROCESSING, preprocessingText } from '../io/preprocess.js';
import type { LoadedModel } from '../io/model.js';
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

/** What `inspect` says about the model's input: shape, layout and preprocessing, found in the file or assumed. */
export function describeInput(model: LoadedModel): {
  inputShape: number[]; inputLayout: string; inputLayoutFrom: 'file' | 'assumed';
  preprocessing: { scale: number; mean?: number[]; std?: number[] }; preprocessingFrom: 'file' | 'assumed';
} {
  const p = model.preprocessing;
  const { layout, ...pixels } = p ?? IDENTITY_PREPROCESSING;
  return {
    inputShape: [...model.inputShape],
    inputLayout: layout ?? 'nhwc',
    inputLayoutFrom: layout ? 'file' : 'assumed',
    preprocessing: pixels,
    preprocessingFrom: p ? 'file' : 'assumed',
  };
}

export function inspectCommand(): Command {
  const cmd = new Command('inspect')
    .summary('layers of a model, and which conv channels are zero (pruned)')
    .description('Print the input (shape, layout, and the preprocessing recorded in the file, or the default assumed when none is), the layer table (name, type, output shape, parameters) and, for every conv layer, the channels of its block output (conv, batch norm, activation) that are provably zero: what a pruned model has lost. Without batch norm that is a zero kernel slice and bias; after batch norm its gamma and beta must be zero too.')
    .requiredOption('-m, --model <path>', 'model: Keras .h5 (full or weights-only), Keras 3 .keras, ONNX (.onnx) or tfjs folder')
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
    const input = describeInput(model);
    const prunePoint = describePrunePoint(model.net);
    if (await emitJson({ model: o.model, format: model.format, input, ...info, ...(prunePoint ? { prunePoint } : {}) }, o.json, o.force)) return;
    console.log(`${o.model} (${model.format}): input ${model.inputShape.join('x')}, ${model.numClasses} classes, ${info.totalParams.toLocaleString('en-US')} parameters`);
    console.log(`input layout: ${input.inputLayout} (${input.inputLayoutFrom === 'file' ? 'recorded in the file' : 'assumed: not recorded in the file'})`);
    console.log(`preprocessing: ${preprocessingText(input.preprocessing)} (${input.preprocessingFrom === 'file' ? 'recorded in the file' : 'assumed: not recorded in the file'})\n`);
    console.log(markdownTable(['layer', 'type', 'output shape', 'params'],
      info.layers.map((l) => [l.name, l.type, `(${l.outputShape.map((d) => d ?? 'N').join(', ')})`, l.params])));
    console.log('');
    console.log(markdownTable(['conv layer', 'block output', 'channels', 'zeroed', 'zeroed channels'],
      info.convs.map((c) => [c.layer, c.output, c.channels, c.zeroChannels.length, c.zeroChannels.length ? ranges(c.zeroChannels) : '-'])));
    if (prunePoint) {
      console.log(`\nprune point ${prunePoint.layer} (${prunePoint.channels} channels; ${HOW[prunePoint.realise]}): ` +
        `${prunePoint.pruned.length} pruned${prunePoint.pruned.length ? ` (${ranges(prunePoint.pruned)})` : ''}`);
    }
  });
}

const HOW: Record<string, string> = {
  zero: 'pruned = its conv (and batch-norm) weights are zero',
  fold: 'pruned = every layer reading it has zero weights for it',
  mask: 'pruned = zeroed by a mask layer',
};

/**
 * The prune point `goodnet prune` would use (or the one a mask layer marks) and which of its
 * channels are pruned in `net`: provably zero, or read by nothing. Undefined where the model
 * has no sound prune point.
 */
function describePrunePoint(net: LayersModel): { layer: string; channels: number; realise: string; pruned: number[] } | undefined {
  try {
    const maskLayer = maskLayerOf(net);
    const cut = findCutPoint(net, maskLayer?.name);
    return { layer: cut.conv, channels: cut.channels, realise: cut.realise.kind, pruned: prunedChannels(net, cut) };
  } catch {
    return undefined;
  }
}
