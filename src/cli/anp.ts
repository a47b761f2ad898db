import '../defense/registry.js'; // registration order = the comparison's order
import { Option, type Command } from 'commander';
import { ANP_DEFAULTS } from '../defense/anp.js';
import { parseInteger, parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface AnpCliOpts extends DefenseCliOpts {
  eps: number;
  alpha: number;
  lr: number;
  iterations: number;
  anpBatchSize: number;
  threshold: number;
  count?: number;
  maxDrop?: number;
  noiseSteps: number;
  bnStats: 'batch' | 'running';
  holdOut: number;
}

export function anpCommand(): Command {
  const d = ANP_DEFAULTS;
  return defenseCommand<AnpCliOpts>('anp', {
    description:
      'ANP, adversarial neuron pruning (Wu and Wang, NeurIPS 2021). Every conv channel gets a mask in [0,1] and ' +
      'multiplicative noise on the layer that carries it (the BatchNormalization after the conv, as the original; for ' +
      'convs without BN, the conv channel itself). Per batch of clean images the noise starts uniform in [-eps, eps] and ' +
      'takes a signed gradient ascent step of eps, and the masks one SGD step on alpha x natural loss + (1 - alpha) x ' +
      'perturbed loss, clipped to [0,1]; BN uses the batch\'s statistics, as the original in train mode. Defaults are the ' +
      'original\'s (2000 iterations of 128). Then channels are pruned (BN weight set to 0, bias kept, as the original): mask ' +
      'below --threshold (default), or the --count smallest, or as many of the smallest as keep clean accuracy within ' +
      '--max-drop points on a held-out share (--hold-out) of the clean data the masks never saw. Only clean data choose anything.',
    examples:
      '  goodnet anp -m bd_net.h5 --clean-valid cl/valid.h5 --clean-images 2500 -o anp.h5\n' +
      '  goodnet anp -m bd_net.h5 --clean-valid cl/valid.h5 --max-drop 2 -o anp.h5 --clean-test cl/test.h5 --poisoned-test bd/bd_test.h5 -t 0',
    outRequired: true,
    configure: (cmd) => cmd
      .option('--eps <x>', 'noise bound', parsePositive('--eps'), d.eps)
      .option('--alpha <x>', 'weight of the natural loss', parsePositive('--alpha'), d.alpha)
      .option('--lr <x>', 'mask learning rate (SGD, momentum 0.9)', parsePositive('--lr'), d.learningRate)
      .option('--iterations <n>', 'mask optimisation steps', parseInteger('--iterations', 1), d.iterations)
      .option('--anp-batch-size <n>', 'clean images per step', parseInteger('--anp-batch-size', 1), d.batchSize)
      .option('--threshold <x>', 'prune channels whose mask is below this', parsePositive('--threshold'), d.threshold)
      .option('--count <n>', 'prune exactly the n smallest masks instead', parseInteger('--count', 0))
      .option('--max-drop <points>', 'prune the smallest masks while held-out clean accuracy stays within this many points instead', parsePositive('--max-drop'))
      .option('--hold-out <share>', 'with --max-drop: share of the clean images held out from the masks to measure the drop', parsePositive('--hold-out'), d.holdOut)
      .option('--noise-steps <n>', 'signed gradient steps on the noise per batch', parseInteger('--noise-steps', 1), d.noiseSteps)
      .addOption(new Option('--bn-stats <which>', 'BN statistics during the mask optimisation: the batch\'s (the original\'s train mode) or the stored running ones').choices(['batch', 'running']).default(d.bnStats)),
    options: (o) => ({
      eps: o.eps, alpha: o.alpha, learningRate: o.lr, iterations: o.iterations, batchSize: o.anpBatchSize,
      threshold: o.threshold, count: o.count, maxDrop: o.maxDrop, holdOut: o.holdOut, noiseSteps: o.noiseSteps, bnStats: o.bnStats,
    }),
  });
}
