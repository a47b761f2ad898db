/**
 * The `goodnet` command. Subcommands live one per file; this file wires them up and turns
 * errors into one line on stderr and an exit code (2 for bad input, 1 for bugs).
 *
 * Startup is lazy: a command's module (and with it tfjs, h5wasm, vega...) is imported only
 * when that command runs or its help is asked for. `goodnet --help` lists the commands from
 * COMMAND_SPECS below (name, usage term, summary); a test checks that they match the real
 * command definitions, so the lazy listing is the same text as the eager one. A new command
 * needs its entry in COMMAND_SPECS.
 */
import { Command, CommanderError, Help } from 'commander';
import { readFileSync } from 'node:fs';
import { GoodnetError, EXIT_BAD_INPUT, oneLine } from '../errors.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** What `goodnet --help` lists for a command, and how to load its full definition. */
/** Usage errors as every other error: one line, `goodnet: error: ...`, with the hint on the same line. */
const USAGE_OUTPUT = {
  outputError: (str: string, write: (s: string) => void) =>
    write(`goodnet: ${oneLine(str).replace(/^(goodnet: )?(error: )?/, 'error: ')} (run with --help for usage)\n`),
};

export interface CommandSpec {
  name: string;
  /** As commander's Help.subcommandTerm prints it: name, ' [options]', arguments. */
  term: string;
  summary: string;
  load: () => Promise<Command>;
}

export const COMMAND_SPECS: readonly CommandSpec[] = [
  { name: 'demo', term: 'demo [options]',
    summary: 'the whole experiment on the built-in data: attack, eval, prune, GoodNets, every defense, a modern BadNet, report',
    load: async () => (await import('./demo.js')).demoCommand() },
  { name: 'attack', term: 'attack [options]',
    summary: 'make a BadNet: poison a data set, train DeepID, VGG or ResNet, write the CSAW lab layout',
    load: async () => (await import('./attack.js')).attackCommand() },
  { name: 'eval', term: 'eval [options]',
    summary: 'clean accuracy and attack success rate of a model',
    load: async () => (await import('./eval.js')).evalCommand() },
  { name: 'prune', term: 'prune [options]',
    summary: 'the pruning defense: sweep, repaired models B\'_X, GoodNets',
    load: async () => (await import('./prune.js')).pruneCommand() },
  { name: 'goodnet', term: 'goodnet [options]',
    summary: 'measure the GoodNet made of a BadNet B and a repaired B\'',
    load: async () => (await import('./goodnet.js')).goodnetCommand() },
  { name: 'fineprune', term: 'fineprune [options]',
    summary: 'fine-pruning: fine-tune a pruned model on clean data, pruned channels held at zero',
    load: async () => (await import('./fineprune.js')).finepruneCommand() },
  { name: 'strip', term: 'strip [options]',
    summary: 'STRIP: flag inputs that carry a trojan trigger (input-level detection)',
    load: async () => (await import('./strip.js')).stripCommand() },
  { name: 'nc', term: 'nc [options]',
    summary: 'reverse-engineers a minimal trigger per label, flags outlier labels (MAD anomaly index of the log norms > 2), unlearns the reversed trigger',
    load: async () => (await import('./nc.js')).ncCommand() },
  { name: 'anp', term: 'anp [options]',
    summary: 'learns per-channel masks under adversarial multiplicative noise on clean data and prunes the channels whose masks collapse',
    load: async () => (await import('./anp.js')).anpCommand() },
  { name: 'clp', term: 'clp [options]',
    summary: 'data-free: prunes conv channels whose Lipschitz upper bound exceeds mean + u x std of their layer',
    load: async () => (await import('./clp.js')).clpCommand() },
  { name: 'rnp', term: 'rnp [options]',
    summary: 'unlearns a copy on clean data, learns channel masks that recover it, and prunes the original\'s channels whose masks stay low',
    load: async () => (await import('./rnp.js')).rnpCommand() },
  { name: 'fst', term: 'fst [options]',
    summary: 're-initialises the classifier head and tunes all weights on clean data while pushing the new head away from the old one (norm kept)',
    load: async () => (await import('./fst.js')).fstCommand() },
  { name: 'unlearn', term: 'unlearn [options]',
    summary: 'reverses a trigger for every label, unlearns the ones Neural Cleanse flags on clean data (in rounds), prunes what they excite; nothing flagged: model unchanged',
    load: async () => (await import('./unlearn.js')).unlearnCommand() },
  { name: 'sau', term: 'sau [options]',
    summary: 'unlearns shared adversarial examples of the model and its frozen original (L_inf PGD on clean data), epoch chosen on held-out clean data',
    load: async () => (await import('./sau.js')).sauCommand() },
  { name: 'compare', term: 'compare [options]',
    summary: 'run every registered defense on one BadNet and compare them, as BackdoorBench does',
    load: async () => (await import('./compare.js')).compareCommand() },
  { name: 'serve', term: 'serve [options]',
    summary: 'serve the browser page (the whole defense in a web page) on 127.0.0.1',
    load: async () => (await import('./serve.js')).serveCommand() },
  { name: 'report', term: 'report <dir>',
    summary: 'write the HTML report (and figures) of a prune, compare or demo folder',
    load: async () => (await import('./report.js')).reportCommand() },
  { name: 'predict', term: 'predict [options] <inputs...>',
    summary: 'classify images with a model',
    load: async () => (await import('./predict.js')).predictCommand() },
  { name: 'inspect', term: 'inspect [options]',
    summary: 'layers of a model, and which conv channels are zero (pruned)',
    load: async () => (await import('./inspect.js')).inspectCommand() },
];

/**
 * The commands `argv` needs in full: the first operand (after the root options), and after
 * `help` the one it names. Unknown names load nothing (commander reports them).
 */
export function commandsNeeded(argv: readonly string[]): string[] {
  const operands = argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = new Set(COMMAND_SPECS.map((c) => c.name));
  const first = operands[0];
  if (first === 'help') return operands[1] !== undefined && names.has(operands[1]) ? [operands[1]] : [];
  return first !== undefined && names.has(first) ? [first] : [];
}

/**
 * The CLI's commander program. Only the commands `argv` runs (see commandsNeeded) are
 * loaded; the others are light stand-ins that carry the name and summary for the listing.
 * `all` loads every command (tests compare the two).
 */
export async function program(argv: readonly string[] = [], all = false): Promise<Command> {
  const needed = new Set(all ? COMMAND_SPECS.map((c) => c.name) : commandsNeeded(argv));
  const root = new Command('goodnet')
    .version(pkg.version)
    .description(
      'Find and remove backdoors in image classifiers.\n\n' +
      'Evaluate a possibly backdoored model (a "BadNet") on clean and poisoned data, repair it by ' +
      'pruning the channels the backdoor hides in, and report what changed.')
    .option('--debug', 'show stack traces for errors')
    .configureOutput(USAGE_OUTPUT)
    .exitOverride();
  // Stand-ins have no options or arguments: their listed term comes from the spec.
  const stubTerms = new Map<Command, string>();
  root.configureHelp({ subcommandTerm: (cmd) => stubTerms.get(cmd) ?? new Help().subcommandTerm(cmd) });
  const subs = await Promise.all(COMMAND_SPECS.map(async (spec) => {
    if (needed.has(spec.name)) return spec.load();
    const stub = new Command(spec.name).summary(spec.summary);
    stubTerms.set(stub, spec.term);
    return stub;
  }));
  for (const sub of subs) {
    root.addCommand(sub.exitOverride().configureOutput(USAGE_OUTPUT));
  }
  root.addHelpText('after', `
Models: ONNX (from PyTorch), Keras 3 .keras files, Keras HDF5 full models and weights-only files (with --weights-arch), tfjs folders.
Data:   CSAW-HackML HDF5 (\`data\` (N,C,H,W) or (N,H,W,C), \`label\` (N)), image folders.

Run 'goodnet <command> --help' for a command's options and examples.`);
  return root;
}

/** Run the CLI; returns the exit code instead of exiting, so it can be tested in-process. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    await (await program(argv)).parseAsync(argv);
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
