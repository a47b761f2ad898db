import '../defense/registry.js'; // registration order = the comparison's order
import { Option, type Command } from 'commander';
import { UNLEARN_DEFAULTS, UNLEARN_LABELS, type UnlearnLabels } from '../defense/unlearn.js';
import { parseInteger, parseNonNegative, parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface UnlearnCliOpts extends DefenseCliOpts {
  labels: UnlearnLabels;
  anomalyThreshold: number;
  starts: number;
  rounds: number;
  share: number;
  epochs: number;
  lr: number;
  unlearnBatchSize: number;
  holdOut: number;
  maxDrop: number;
  reverseEpochs: number;
  stepsPerEpoch: number;
  pruneRank: 'none' | 'original' | 'unlearned';
  pruneDrop: number;
  pruneNorm: number;
}

export function unlearnCommand(): Command {
  const d = UNLEARN_DEFAULTS;
  return defenseCommand<UnlearnCliOpts>('unlearn', {
    trains: true,
    description:
      'Trigger unlearning. Neural Cleanse\'s optimisation reverses a trigger (mask + pattern) for every ' +
      'label on the clean data. The triggers of the labels Neural Cleanse\'s anomaly index (log norms, as goodnet nc) flags ' +
      '(--labels flagged, the default: nothing flagged leaves the model unchanged; later rounds re-reverse only those labels; the pruning\'s gate is ' +
      '"some label flagged"), or, without detection, those below the median norm (--labels below-median) or all that reach 99% attack ' +
      'success (--labels all) are stamped on --share of the clean images, true labels ' +
      'kept, and the model is fine-tuned (Adam) for --epochs epochs. A held-out share of the clean images (--hold-out, never ' +
      'trained or reversed on) chooses the epoch: the highest accuracy of held-out images stamped with the triggers (scored ' +
      'against their true labels) among the epochs whose clean held-out accuracy is within --max-drop points of the original ' +
      'model\'s. Then every label is reversed again on the unlearned model; while some label\'s new trigger still reaches 99% ' +
      'with a norm below the first round\'s median, those triggers join the stamped ones and another round runs (--rounds). ' +
      'Last, when some round-1 trigger\'s norm is below --prune-norm x the median, the channels of the prune point that the stamped triggers excite most (mean activation on stamped held-out images ' +
      'minus on the same images unstamped, read from the original model by default: --prune-rank) are pruned, most excited ' +
      'first, while the held-out clean accuracy stays within --prune-drop points of the unlearned model\'s.',
    examples:
      '  goodnet unlearn -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 -o unlearned.h5\n' +
      '  goodnet unlearn -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 -o unlearned.h5 \\\n' +
      '      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0 --json unlearn.json',
    outRequired: true,
    configure: (cmd) => cmd
      .addOption(new Option('--labels <which>', 'round 1 stamps the reversed triggers of all labels, only those below the median norm, or only the labels flagged by Neural Cleanse\'s anomaly index').choices([...UNLEARN_LABELS]).default(d.labels))
      .option('--anomaly-threshold <x>', 'with --labels flagged: flag labels below the median whose anomaly index (log norms) is above this', parseNonNegative('--anomaly-threshold'), d.anomalyThreshold)
      .option('--starts <n>', 'with --labels flagged: reverse each flagged label this many times in round 1 (fresh random starts) and stamp every one that works below the median norm', parseInteger('--starts', 1), d.starts)
      .option('--rounds <n>', 'at most this many reversal + unlearning rounds', parseInteger('--rounds', 1), d.rounds)
      .option('--share <f>', 'share of the clean training images stamped with a reversed trigger (true labels kept)', parsePositive('--share'), d.share)
      .option('--epochs <n>', 'fine-tuning epochs per round (the best by the held-out criterion is kept)', parseInteger('--epochs', 1), d.epochs)
      .option('--lr <x>', 'fine-tuning Adam learning rate', parsePositive('--lr'), d.learningRate)
      .option('--unlearn-batch-size <n>', 'fine-tuning batch size', parseInteger('--unlearn-batch-size', 1), d.batchSize)
      .option('--hold-out <share>', 'share of the clean images held out to choose the epoch', parsePositive('--hold-out'), d.holdOut)
      .option('--max-drop <points>', 'held-out clean accuracy may fall at most this many points below the original\'s', parsePositive('--max-drop'), d.maxDrop)
      .option('--reverse-epochs <n>', 'trigger reversal epochs per label per round', parseInteger('--reverse-epochs', 1), d.reverseEpochs)
      .option('--steps-per-epoch <n>', 'trigger reversal optimisation steps per epoch', parseInteger('--steps-per-epoch', 1), d.reverseStepsPerEpoch)
      .addOption(new Option('--prune-rank <model>', 'rank the prune point\'s channels by the triggers\' excitation on the original or the unlearned model; none: no pruning').choices(['original', 'unlearned', 'none']).default(d.pruneRank))
      .option('--prune-norm <share>', 'prune only when some round-1 trigger has a norm below this share of that round\'s median', parsePositive('--prune-norm'), d.pruneNorm)
      .option('--prune-drop <points>', 'the pruning\'s held-out clean budget, points below the unlearned model\'s accuracy', parseNonNegative('--prune-drop'), d.pruneDrop),
    options: (o) => ({
      labels: o.labels, anomalyThreshold: o.anomalyThreshold, starts: o.starts, rounds: o.rounds, share: o.share, epochs: o.epochs, learningRate: o.lr, batchSize: o.unlearnBatchSize,
      holdOut: o.holdOut, maxDrop: o.maxDrop, reverseEpochs: o.reverseEpochs, reverseStepsPerEpoch: o.stepsPerEpoch,
      pruneRank: o.pruneRank, pruneDrop: o.pruneDrop, pruneNorm: o.pruneNorm,
    }),
  });
}
