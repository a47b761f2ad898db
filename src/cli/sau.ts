import '../defense/registry.js'; // registration order = the comparison's order
import type { Command } from 'commander';
import { SAU_DEFAULTS } from '../defense/sau.js';
import { parseInteger, parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface SauCliOpts extends DefenseCliOpts {
  eps: number;
  stepSize: number;
  pgdSteps: number;
  epochs: number;
  lr: number;
  sauBatchSize: number;
  holdOut: number;
  maxDrop: number;
}

export function sauCommand(): Command {
  const d = SAU_DEFAULTS;
  return defenseCommand<SauCliOpts>('sau', {
    description:
      'SAU, shared adversarial unlearning (Wei et al., NeurIPS 2023), from clean data only. Per batch, a per-image perturbation ' +
      'bounded in L_inf by --eps of the pixel range (0.2, the original\'s) takes --pgd-steps signed steps towards a *shared* ' +
      'adversarial example: one that the model and its frozen original both misclassify, to the same label (the original\'s ' +
      'loss 0.01 x adversarial + 1 x Jensen-Shannon). Then one Adam step on clean cross-entropy + the shared adversarial ' +
      'risk (the model\'s probability of the original\'s adversarial label pushed down). BN keeps its stored statistics. ' +
      'A held-out share of the clean images (--hold-out) chooses the epoch: the fewest shared adversarial examples among the ' +
      'epochs whose clean accuracy is within --max-drop points of the original model\'s.',
    examples:
      '  goodnet sau -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 -o sau.h5\n' +
      '  goodnet sau -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --clean-images 2500 -o sau.h5 \\\n' +
      '      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0 --json sau.json',
    outRequired: true,
    configure: (cmd) => cmd
      .option('--eps <x>', 'L_inf bound of the perturbation, as a share of the clean data\'s pixel range', parsePositive('--eps'), d.eps)
      .option('--step-size <x>', 'PGD step, same unit as --eps', parsePositive('--step-size'), d.stepSize)
      .option('--pgd-steps <n>', 'PGD steps per batch', parseInteger('--pgd-steps', 1), d.steps)
      .option('--epochs <n>', 'unlearning epochs (the best by the held-out criterion is kept)', parseInteger('--epochs', 1), d.epochs)
      .option('--lr <x>', 'Adam learning rate', parsePositive('--lr'), d.learningRate)
      .option('--sau-batch-size <n>', 'clean images per step', parseInteger('--sau-batch-size', 1), d.batchSize)
      .option('--hold-out <share>', 'share of the clean images held out to choose the epoch', parsePositive('--hold-out'), d.holdOut)
      .option('--max-drop <points>', 'held-out clean accuracy may fall at most this many points below the original\'s', parsePositive('--max-drop'), d.maxDrop),
    options: (o) => ({
      eps: o.eps, stepSize: o.stepSize, steps: o.pgdSteps, epochs: o.epochs, learningRate: o.lr, batchSize: o.sauBatchSize, holdOut: o.holdOut, maxDrop: o.maxDrop,
    }),
  });
}
