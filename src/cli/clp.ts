import '../defense/registry.js'; // registration order = the comparison's order
import type { Command } from 'commander';
import { CLP_DEFAULTS } from '../defense/clp.js';
import { GoodnetError } from '../errors.js';
import { parsePositive } from './common.js';
import { defenseCommand, type DefenseCliOpts } from './defense_cli.js';

interface ClpCliOpts extends DefenseCliOpts {
  u: number[];
  maxDrop: number;
}

function uList(v: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x) || x < 0)) throw new GoodnetError(`--u must be one or more numbers >= 0 (e.g. 3 or 2,2.5,3), got '${v}'`);
  return xs;
}

export function clpCommand(): Command {
  const d = CLP_DEFAULTS;
  return defenseCommand<ClpCliOpts>('clp', {
    description:
      'CLP, channel Lipschitzness-based pruning (Zheng et al., ECCV 2022). Data-free: for every conv output channel, the ' +
      'largest singular value of its kernel slice times |gamma / sqrt(var)| of the BatchNormalization after the conv; channels ' +
      'above mean + u x std of their layer are pruned (BN gamma and beta, or the conv kernel slice and bias, set to 0).\n\n' +
      'Convs without BN (the lab\'s DeepID) use the kernel alone: the bound then ignores the per-channel scale BN would fold ' +
      'in, and CLP is a weaker signal there (the output says which layers). The clean data only measure each u; with ' +
      'several (--u 2,2.5,3) the smallest whose clean accuracy drop stays within --max-drop points is kept.',
    examples:
      '  goodnet clp -m bd_net.h5 --clean-valid cl/valid.h5 -o clp.h5\n' +
      '  goodnet clp -m bd_net.h5 --clean-valid cl/valid.h5 --u 2,2.5,3,4 -o clp.h5 --clean-test cl/test.h5 --poisoned-test bd/bd_test.h5 -t 0',
    outRequired: true,
    configure: (cmd) => cmd
      .option('--u <list>', 'threshold multiplier(s), comma-separated', uList, d.u)
      .option('--max-drop <points>', 'accuracy budget when choosing among several u', parsePositive('--max-drop'), d.maxDrop),
    options: (o) => ({ u: o.u, maxDrop: o.maxDrop }),
  });
}
