/**
 * The `goodnet` command. Subcommands live one per file; this file wires them up and turns
 * errors into one line on stderr and an exit code (2 for bad input, 1 for bugs).
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { GoodnetError, EXIT_BAD_INPUT, oneLine } from '../errors.js';
import { attackCommand } from './attack.js';
import { demoCommand } from './demo.js';
import { evalCommand } from './eval.js';
import { finepruneCommand } from './fineprune.js';
import { goodnetCommand } from './goodnet.js';
import { inspectCommand } from './inspect.js';
import { predictCommand } from './predict.js';
import { pruneCommand } from './prune.js';
import { reportCommand } from './report.js';
import { stripCommand } from './strip.js';
import { anpCommand } from './anp.js';
import { clpCommand } from './clp.js';
import { ncCommand } from './nc.js';
import { compareCommand } from './compare.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export function program(): Command {
  const root = new Command('goodnet')
    .version(pkg.version)
    .description(
      'Find and remove backdoors in image classifiers.\n\n' +
      'Evaluate a possibly backdoored model (a "BadNet") on clean and poisoned data, repair it by ' +
      'pruning the channels the backdoor hides in, and report what changed.')
    .option('--debug', 'show stack traces for errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const sub of [demoCommand(), attackCommand(), evalCommand(), pruneCommand(), goodnetCommand(), finepruneCommand(), stripCommand(), ncCommand(), anpCommand(), clpCommand(), compareCommand(), reportCommand(), predictCommand(), inspectCommand()]) {
    root.addCommand(sub.exitOverride().showHelpAfterError('(run with --help for usage)'));
  }
  root.addHelpText('after', `
Models: Keras HDF5 full models and weights-only files (with --weights-arch), tfjs folders.
Data:   CSAW-HackML HDF5 (\`data\` (N,C,H,W) or (N,H,W,C), \`label\` (N)), image folders.

Run 'goodnet <command> --help' for a command's options and examples.`);
  return root;
}

/** Run the CLI; returns the exit code instead of exiting, so it can be tested in-process. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version "errors" are successes; commander has already printed its message.
      return err.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
    }
    if (err instanceof GoodnetError) {
      process.stderr.write(`goodnet: error: ${oneLine(err.message)}\n`);
      if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
      return EXIT_BAD_INPUT;
    }
    const e = err as Error;
    process.stderr.write(`goodnet: internal error: ${oneLine(e?.message ?? String(err))}\n`);
    if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
    else process.stderr.write('(run with --debug for the stack trace; please report it)\n');
    return 1;
  }
}
