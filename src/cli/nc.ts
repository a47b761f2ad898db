import '../defense/registry.js'; // registration order = the comparison's order
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { AnomalyScale, NcDetails } from '../defense/nc.js';
import { ANOMALY_SCALES, NC_DEFAULTS } from '../defense/nc.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { checkWritable, writeAtomically } from '../io/atomic.js';
import type { ReportSection } from '../defense/interface.js';
import { parseInteger, parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface NcCliOpts extends DefenseCliOpts {
  labels?: string;
  ncBatchSize: number;
  stepsPerEpoch: number;
  maxEpochs: number;
  lr: number;
  initCost: number;
  patience: number;
  anomalyThreshold: number;
  anomalyScale: AnomalyScale;
  unlearnShare: number;
  unlearnEpochs: number;
  unlearnLr: number;
  unlearnRounds: number;
  triggers?: string;
}

/** One PNG per label: mask x pattern (the reversed trigger as it is stamped), 0..1 -> 0..255. */
async function writeTriggers(dir: string, section: ReportSection, overwrite?: boolean): Promise<void> {
  await writeAtomically(dir, (tmp) => {
    mkdirSync(tmp);
    for (const [i, im] of (section.images ?? []).entries()) {
      const png = new PNG({ width: im.width, height: im.height });
      for (let p = 0; p < im.width * im.height; p++) {
        for (let ch = 0; ch < 3; ch++) png.data[p * 4 + ch] = Math.round(255 * Math.min(1, Math.max(0, im.pixels[p * im.channels + (im.channels === 3 ? ch : 0)]!)));
        png.data[p * 4 + 3] = 255;
      }
      const label = /^label (\d+)/.exec(im.caption)?.[1] ?? String(i);
      writeFileSync(join(tmp, `label_${label}.png`), PNG.sync.write(png));
    }
  }, { overwrite, folder: true });
}

function labelList(v: string): string {
  if (!/^\d+(,\d+)*$/.test(v.trim())) throw new InvalidArgumentError(`--labels must be a comma-separated list of labels, got '${v}'`);
  return v;
}

export function ncCommand(): Command {
  const d = NC_DEFAULTS;
  return defenseCommand<NcCliOpts>('nc', {
    trains: true,
    description:
      'Neural Cleanse (Wang et al., IEEE S&P 2019). For every label, optimise the smallest trigger (a mask in [0,1] through ' +
      'tanh and a pattern) that sends clean images to that label: cross-entropy to the label + cost x L1(mask), Adam, the ' +
      'original\'s adaptive cost (x1.5 / x1.5^-1.5 after --patience epochs above / below 99% attack success) and early ' +
      'stopping. All labels are optimised together in one batch. A label whose mask norm is below the median with anomaly ' +
      'index |v - median| / (1.4826 x MAD) above 2 is flagged: the model is backdoored towards it; v is the log of the norm ' +
      '(--anomaly-scale log, the default: the spread measured in ratios) or the norm itself (norm, the original\'s, which ' +
      'can never flag a label when the labels\' norms spread as widely as their median). The JSON gives both indices.\n\n' +
      'With -o, the model is repaired by unlearning: fine-tuning on the clean data with the reversed trigger of each ' +
      'flagged label stamped on a share of it (true labels kept), the epoch chosen on a held-out part of that data; after ' +
      'each round the flagged labels\' triggers are reversed again on the unlearned model and, while one is still anomalous ' +
      '(index above the threshold against the first scan), added to the stamped triggers for another round (--unlearn-rounds). ' +
      'Without -o, detection only. When nothing is flagged, the saved model is the input unchanged.',
    examples:
      '  goodnet nc -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 --json nc.json\n' +
      '  goodnet nc -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 -o nc.h5 \\\n' +
      '      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0',
    outRequired: false,
    configure: (cmd) => cmd
      .option('--labels <list>', 'analyse only these labels (comma-separated; default all)', labelList)
      .option('--nc-batch-size <n>', 'clean images per label per optimisation step', parseInteger('--nc-batch-size', 1), d.batchSize)
      .option('--steps-per-epoch <n>', 'optimisation steps per epoch (the cost schedule acts per epoch)', parseInteger('--steps-per-epoch', 1), d.stepsPerEpoch)
      .option('--max-epochs <n>', 'at most this many epochs per label (early stopping usually ends sooner)', parseInteger('--max-epochs', 1), d.maxEpochs)
      .option('--lr <x>', 'Adam learning rate of the trigger', parsePositive('--lr'), d.learningRate)
      .option('--init-cost <x>', 'initial weight of the mask L1 norm', parsePositive('--init-cost'), d.initCost)
      .option('--patience <n>', 'epochs before the cost moves (early stopping: twice this)', parseInteger('--patience', 1), d.patience)
      .option('--anomaly-threshold <x>', 'flag labels below the median with an anomaly index above this', parsePositive('--anomaly-threshold'), d.anomalyThreshold)
      .addOption(new Option('--anomaly-scale <scale>', 'the anomaly index on the log of the mask norms or on the norms (the original\'s)').choices(ANOMALY_SCALES).default(d.anomalyScale))
      .option('--unlearn-share <f>', 'share of the clean images stamped with the reversed trigger when unlearning', parsePositive('--unlearn-share'), d.unlearnShare)
      .option('--unlearn-epochs <n>', 'unlearning epochs (the best on held-out data is kept)', parseInteger('--unlearn-epochs', 1), d.unlearnEpochs)
      .option('--unlearn-lr <x>', 'unlearning Adam learning rate', parsePositive('--unlearn-lr'), d.unlearnLearningRate)
      .option('--unlearn-rounds <n>', 'at most this many unlearning rounds: after each, the flagged labels are reversed again and, while still anomalous, unlearned again (1: the original\'s single fine-tuning)', parseInteger('--unlearn-rounds', 1), d.unlearnRounds)
      .option('--triggers <dir>', 'write each label\'s reversed trigger (mask x pattern) as DIR/label_<k>.png'),
    check: (o) => { if (o.triggers) checkWritable(o.triggers, { overwrite: o.force, folder: true }); },
    write: async (o, section) => { if (o.triggers) await writeTriggers(o.triggers, section, o.force); },
    options: (o) => ({
      labels: o.labels?.split(',').map(Number), batchSize: o.ncBatchSize, stepsPerEpoch: o.stepsPerEpoch, maxEpochs: o.maxEpochs,
      learningRate: o.lr, initCost: o.initCost, patience: o.patience, anomalyThreshold: o.anomalyThreshold, anomalyScale: o.anomalyScale,
      unlearnShare: o.unlearnShare, unlearnEpochs: o.unlearnEpochs, unlearnLearningRate: o.unlearnLr, unlearnRounds: o.unlearnRounds, unlearn: o.out !== undefined,
    }),
    json: (r) => ({ anomalyScale: (r.details as NcDetails).anomalyScale, labels: (r.details as NcDetails).labels.map((l) => ({ label: l.label, norm: l.norm, anomalyIndex: l.anomalyIndex, anomalyIndexNorm: l.anomalyIndexNorm })) }),
    print: (r) => {
      const f = r.verdict!.flagged;
      console.log(`\nverdict: ${f.length ? `backdoored, towards label${f.length > 1 ? 's' : ''} ${f.join(', ')}` : 'no backdoor found'}`);
    },
  });
}
