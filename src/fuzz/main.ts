/**
 * `npm run fuzz -- [--count N] [--seconds S] [--seed K] [--save DIR] [--timeout S] [--memory MiB]`: the loader fuzzer.
 * `npm run fuzz -- --commands [--count N] [--seed K] [--parallel P] [--save DIR]`: the command fuzzer (src/fuzz/commands.ts).
 * Exit 0 when every mutant loaded or failed with a proper GoodnetError, else 1.
 */
import { initBackend } from '../engine/backend.js';
import { fuzz } from './harness.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const num = (name: string) => (arg(name) === undefined ? undefined : Number(arg(name)));

await initBackend('cpu');
if (process.argv.includes('--commands')) {
  // The command fuzzer: whole command lines, outputs, signals (src/fuzz/commands.ts).
  const { fuzzCommands } = await import('./commands.js');
  const r = await fuzzCommands({
    count: num('count') ?? 500, seed: num('seed'), parallel: num('parallel'), saveDir: arg('save') ?? 'fuzz-failures',
    log: (l) => process.stderr.write(`${l}\n`),
  });
  const failed = r.results.filter((x) => !x.ok);
  const codes = new Map<string, number>();
  for (const x of r.results) for (const c of x.codes) codes.set(String(c), (codes.get(String(c)) ?? 0) + 1);
  process.stdout.write(`fuzz --commands: ${r.results.length} cases, ${failed.length} failures, exits ${[...codes].map(([c, n]) => `${c}:${n}`).join(' ')}` +
    `${r.mounts ? '' : ' (no tmpfs mounts: not root)'}, ${r.seconds.toFixed(1)} s\n`);
  process.exit(failed.length === 0 ? 0 : 1);
}
const summary = await fuzz({
  count: num('count'),
  seconds: num('seconds'),
  seed: num('seed'),
  saveDir: arg('save') ?? 'fuzz-failures',
  timeoutS: num('timeout'),
  memoryMiB: num('memory'),
  log: (l) => process.stderr.write(`${l}\n`),
});
process.stdout.write(`fuzz: ${summary.mutants} mutants (${Object.entries(summary.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}): ` +
  `${summary.ok} loaded, ${summary.errors} GoodnetErrors, ${summary.failures.length} failures, ${summary.seconds.toFixed(1)} s\n`);
process.exit(summary.failures.length === 0 ? 0 : 1);
