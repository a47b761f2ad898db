import '../defense/registry.js'; // registration order = the comparison's order
import type { Command } from 'commander';
import { RNP_DEFAULTS } from '../defense/rnp.js';
import { parseInteger, parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface RnpCliOpts extends DefenseCliOpts {
  unlearnLr: number;
  unlearnEpochs: number;
  cleanThreshold: number;
  checkImages: number;
  recoverLr: number;
  recoverEpochs: number;
  alpha: number;
  rnpBatchSize: number;
  threshold: number;
  count?: number;
  maxDrop?: number;
  holdOut: number;
}

export function rnpCommand(): Command {
  const d = RNP_DEFAULTS;
  return defenseCommand<RnpCliOpts>('rnp', {
    description:
      'RNP, reconstructive neuron pruning (Li et al., ICML 2023), from clean data only. 1. Unlearning: a copy of the model ' +
      'takes SGD steps that maximise its clean cross-entropy until its training accuracy falls to --clean-threshold ' +
      '(checked every --check-images images). ' +
      '2. Recovering: per-channel masks in [0,1] on the unlearned copy (on the BN weight; without BN on the conv channel) ' +
      'learn to restore its clean accuracy. 3. The original model\'s channels whose masks stay low are pruned (BN weight ' +
      'set to 0, bias kept): mask below --threshold (default), or the --count smallest, or as many of the smallest as keep ' +
      'clean accuracy within --max-drop points on a held-out share (--hold-out) of the clean data. BN uses the batch\'s ' +
      'statistics in both stages, as the original (model.train()); defaults are the original\'s.',
    examples:
      '  goodnet rnp -m bd_net.h5 --clean-valid cl/valid.h5 --clean-images 2500 -o rnp.h5\n' +
      '  goodnet rnp -m bd_net.h5 --clean-valid cl/valid.h5 --clean-images 2500 --max-drop 2 -o rnp.h5 --clean-test cl/test.h5 --poisoned-test bd/bd_test.h5 -t 0',
    outRequired: true,
    configure: (cmd) => cmd
      .option('--unlearn-lr <x>', 'unlearning SGD learning rate (momentum 0.9, weight decay 5e-4)', parsePositive('--unlearn-lr'), d.unlearnLr)
      .option('--unlearn-epochs <n>', 'at most this many unlearning epochs', parseInteger('--unlearn-epochs', 1), d.unlearnEpochs)
      .option('--clean-threshold <x>', 'stop unlearning once its training accuracy is at most this (0..1)', parsePositive('--clean-threshold'), d.cleanThreshold)
      .option('--check-images <n>', 'check the unlearning accuracy every n images (the original: its 500-image epoch)', parseInteger('--check-images', 1), d.checkImages)
      .option('--recover-lr <x>', 'mask learning rate (SGD, momentum 0.9)', parsePositive('--recover-lr'), d.recoverLr)
      .option('--recover-epochs <n>', 'mask recovering epochs', parseInteger('--recover-epochs', 1), d.recoverEpochs)
      .option('--alpha <x>', 'weight of the recovering loss', parsePositive('--alpha'), d.alpha)
      .option('--rnp-batch-size <n>', 'clean images per step', parseInteger('--rnp-batch-size', 1), d.batchSize)
      .option('--threshold <x>', 'prune channels whose mask is below this', parsePositive('--threshold'), d.threshold)
      .option('--count <n>', 'prune exactly the n smallest masks instead', parseInteger('--count', 0))
      .option('--max-drop <points>', 'prune the smallest masks while held-out clean accuracy stays within this many points instead', parsePositive('--max-drop'))
      .option('--hold-out <share>', 'with --max-drop: share of the clean images held out to measure the drop', parsePositive('--hold-out'), d.holdOut),
    options: (o) => ({
      unlearnLr: o.unlearnLr, unlearnEpochs: o.unlearnEpochs, cleanThreshold: o.cleanThreshold, checkImages: o.checkImages, recoverLr: o.recoverLr, recoverEpochs: o.recoverEpochs,
      alpha: o.alpha, batchSize: o.rnpBatchSize, threshold: o.threshold, count: o.count, maxDrop: o.maxDrop, holdOut: o.holdOut,
    }),
  });
}
