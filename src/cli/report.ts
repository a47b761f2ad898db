import { Command } from 'commander';
import { GoodnetError } from '../errors.js';
import { isCompareFolder, writeReport } from '../report/build.js';
import { setUp } from './common.js';

export function reportCommand(): Command {
  return new Command('report')
    .summary('write the HTML report (and figures) of a prune, compare or demo folder')
    .description(
      'Read what `goodnet prune` wrote in DIR (or DIR/prune for a demo folder), or what `goodnet compare -o DIR` wrote ' +
      '(the comparison table and scatter, each defense\'s section), and the attack.json of the BadNet ' +
      'when it was made by `goodnet attack`, draw the figures (PNG and SVG in DIR/figures) and write DIR/report.html: ' +
      'one self-contained file (figures inline, no network) with the tables, the commands, versions, input hashes and timings. ' +
      'Nothing is re-run: every number comes from the folder.')
    .argument('<dir>', 'output folder of `goodnet prune`, `goodnet compare` or `goodnet demo`')
    .addHelpText('after', '\nExamples:\n  goodnet report lab/prune\n  goodnet report compare')
    .action(async (dir: string) => {
      await setUp({ backend: 'wasm', batchSize: 256 });
      try {
        console.log(await writeReport(dir));
      } catch (err) {
        // A summary.json edited by hand (a null or missing field) is bad input, not a bug.
        if (err instanceof TypeError || err instanceof RangeError) {
          const what = isCompareFolder(dir) ? 'comparison.json is not what goodnet compare writes' : 'summary.json is not what goodnet prune writes';
          throw new GoodnetError(`${what} (${err.message})`, dir, { cause: err });
        }
        throw err;
      }
    });
}
