import type { Command } from 'commander';
import { Option } from 'commander';
import { FST_DEFAULTS, type FstAugment } from '../defense/fst.js';
import { parseInteger, parseNonNegative, parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface FstCliOpts extends DefenseCliOpts {
  epochs: number;
  lr: number;
  momentum: number;
  alpha: number;
  fstBatchSize: number;
  schedule: 'cosine' | 'constant';
  augment: FstAugment;
  shift: number;
  holdOut: number;
  reinitLayers: number;
  threads: number;
  bnMomentum: number;
  distill: number;
  sam: number;
}

export function fstCommand(): Command {
  const d = FST_DEFAULTS;
  return defenseCommand<FstCliOpts>('fst', {
    trains: true,
    description:
      'FST, feature shift tuning (Min et al., NeurIPS 2023), from clean data only. The classifier head (the last Dense layer) is ' +
      're-initialised; all weights are tuned on the clean images with SGD (momentum 0.9, cosine-annealed learning rate) on ' +
      'cross-entropy + --alpha x <W, W0>, the inner product of the new head\'s weight with the original\'s, and after every step the ' +
      'head\'s weight is scaled back to the original\'s norm. Training images are shifted at random by up to --shift pixels (the ' +
      'original\'s padded random crop). A --hold-out share of the clean images chooses the epoch kept (best clean accuracy). ' +
      'Defaults are the authors\' code\'s (10 epochs, lr 0.01, alpha 0.2, batch 128).',
    examples:
      '  goodnet fst -m bd_net.h5 --clean-valid cl/valid.h5 --clean-images 2500 -o fst.h5\n' +
      '  goodnet fst -m bd_net.h5 --clean-valid cl/valid.h5 --clean-images 2500 -o fst.h5 --clean-test cl/test.h5 --poisoned-test bd/bd_test.h5 -t 0',
    outRequired: true,
    configure: (cmd) => cmd
      .option('-e, --epochs <n>', 'tuning epochs', parseInteger('--epochs', 1, 10000), d.epochs)
      .option('--lr <x>', 'initial SGD learning rate', parsePositive('--lr'), d.learningRate)
      .option('--momentum <x>', 'SGD momentum, in [0, 1)', parseNonNegative('--momentum'), d.momentum)
      .option('--alpha <x>', 'weight of the inner product between the new and the original head (0: FT-init)', parseNonNegative('--alpha'), d.alpha)
      .option('--fst-batch-size <n>', 'clean images per step', parseInteger('--fst-batch-size', 1), d.batchSize)
      .addOption(new Option('--schedule <s>', 'learning-rate schedule over the epochs').choices(['cosine', 'constant']).default(d.schedule))
      .addOption(new Option('--augment <a>', 'training augmentation: none, shift (random shifts, zero fill) or shift-flip (also horizontal flips)').choices(['none', 'shift', 'shift-flip']).default(d.augment))
      .option('--shift <px>', 'largest random shift, pixels', parseInteger('--shift', 0, 64), d.shift)
      .option('--hold-out <share>', 'share of the clean images held out to choose the epoch', parsePositive('--hold-out'), d.holdOut)
      .option('--reinit-layers <n>', 'levels of Dense layers re-initialised: 1 the head; 2 also the Dense layers feeding it; 0 none (plain fine-tuning, needs --alpha 0)', parseInteger('--reinit-layers', 0, 16), d.reinitLayers)
      .option('--bn-momentum <x>', 'BatchNormalization momentum while tuning, Keras convention (0.9 = torch\'s 0.1, the original\'s)', parseNonNegative('--bn-momentum'), d.bnMomentum)
      .option('--distill <share>', 'not in FST: share of the BadNet\'s own output on each clean training image in the target (knowledge distillation; 0: FST as published)', parseNonNegative('--distill'), d.distill)
      .option('--sam <rho>', 'not in FST: SAM fine-tuning as FT-SAM (Zhu et al. 2023), the weights moved by rho along the normalised gradient before each step (0: off)', parseNonNegative('--sam'), d.sam)
      .option('--threads <n>', 'data-parallel training threads (default 1; 0: the core count)', parseInteger('--threads', 0, 256), d.threads),
    options: (o) => ({
      epochs: o.epochs, learningRate: o.lr, momentum: o.momentum, alpha: o.alpha, batchSize: o.fstBatchSize, schedule: o.schedule, augment: o.augment,
      shift: o.shift, holdOut: o.holdOut, reinitLayers: o.reinitLayers, threads: o.threads, bnMomentum: o.bnMomentum, distill: o.distill, sam: o.sam,
    }),
  });
}
