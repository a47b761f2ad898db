/**
 * `npm run fuzz -- [--count N] [--seconds S] [--seed K] [--save DIR] [--timeout S] [--memory MiB]`.
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
