import { Command, Option } from 'commander';
import { GoodnetError } from '../errors.js';
import { runStrip, STRIP_DEFAULTS, type StripMethod, type StripResult, type StripStage, type SuperimposeMode } from '../detect/strip.js';
import { writeStripOutput } from '../report/strip_output.js';
import { markdownTable, percent } from '../report/table.js';
import { addForwardEngineOption, checkForwardEngine, type ForwardEngineOpts, addModelDataEngineOptions, checkOutputs, commandPreprocessing, emitJson, jsonOption, openModel, parseInteger, progress, setUp,
  type DataOpts, type EngineOpts, type ModelOpts } from './common.js';

interface StripCliOpts extends EngineOpts, ForwardEngineOpts, ModelOpts, DataOpts {
  model: string;
  cleanValid: string;
  inputs?: string[];
  cleanTest?: string;
  poisonedTest?: string;
  target?: number;
  n: number;
  frr: number;
  method: StripMethod;
  heldOut: number;
  superimpose: SuperimposeMode;
  pixelMax: number;
  seed: number;
  limit?: number;
  out?: string;
  force?: boolean;
  json?: string;
}

/** Numbers checked here fail as one-line GoodnetErrors (exit 2), like every other bad input. */
function numberArg(flag: string, ok: (x: number) => boolean, what: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new GoodnetError(`${flag} must be ${what}, got '${v}'`);
    return x;
  };
}
const intAtLeast1 = (flag: string) => numberArg(flag, (x) => Number.isSafeInteger(x) && x >= 1, 'an integer >= 1');
const rate = (flag: string, example: string) => numberArg(flag, (x) => x > 0 && x < 1, `in (0, 1) (e.g. ${example})`);

const STAGE_LABEL: Record<StripStage, string> = {
  calibration: 'calibration', 'clean-test': 'clean test', 'poisoned-test': 'poisoned test', inputs: 'inputs',
};

export function stripCommand(): Command {
  const cmd = new Command('strip')
    .summary('STRIP: flag inputs that carry a trojan trigger (input-level detection)')
    .description(
      'STRIP (Gao et al., ACSAC 2019) flags inputs that carry a backdoor trigger, without knowing the trigger. ' +
      'Each input is superimposed on N clean images (the raw pixels added, clipped at white) and the N blends are ' +
      'classified: a clean input is drowned out and the answers scatter (high entropy), a triggered input keeps ' +
      'sending every blend to the attacker\'s target (low entropy). H(x) is the mean Shannon entropy (bits) of the ' +
      'N softmax outputs; inputs with H below the threshold are flagged as trojaned.\n\n' +
      'Calibration: the clean validation set is split (seeded) into backgrounds (to superimpose) and calibration ' +
      'images (--held-out, default half); the threshold is the entropy that flags the share --frr of the ' +
      'calibration images (--method quantile: the floor(frr*m)+1-th smallest of m; normal: the frr-quantile of a ' +
      'fitted normal distribution, as the paper).\n\n' +
      'Then, with --inputs, each image gets its entropy and verdict; with test sets, STRIP is measured: FRR (share ' +
      'of clean test images flagged) and FAR (share of trojaned images accepted: poisoned images whose true label ' +
      'is not --target). Cost: N+1 forward passes per image; --limit bounds the test sets.')
    .requiredOption('-m, --model <path>', 'the model to guard: Keras .h5 (full or weights-only), ONNX (.onnx) or tfjs folder')
    .requiredOption('--clean-valid <path>', 'clean validation data: backgrounds and calibration (HDF5 or image folder)')
    .option('-i, --inputs <paths...>', 'images to check: image files, folders or HDF5 data files')
    .option('--clean-test <path>', 'clean test data, to measure the FRR')
    .option('--poisoned-test <path>', 'poisoned test data, to measure the FAR')
    .option('-t, --target <label>', "attacker's target label (poisoned images labelled with it are not counted)", parseInteger('--target', 0))
    .option('-n, --n <n>', 'clean images superimposed on each input', intAtLeast1('--n'), STRIP_DEFAULTS.n)
    .option('--frr <rate>', 'false rejection rate to calibrate for, in (0, 1)', rate('--frr', '0.01 for 1%'), STRIP_DEFAULTS.frr)
    .addOption(new Option('--method <method>', 'threshold: quantile of the calibration entropies, or normal fit (the paper)').choices(['quantile', 'normal']).default(STRIP_DEFAULTS.method))
    .option('--held-out <share>', 'share of --clean-valid used for calibration; the rest are backgrounds', rate('--held-out', '0.5'), STRIP_DEFAULTS.heldOut)
    .addOption(new Option('--superimpose <mode>', 'clip: x + b clipped to 0..--pixel-max (saturating image addition); add: x + b unclipped (the reference code on float images)').choices(['clip', 'add']).default(STRIP_DEFAULTS.superimpose))
    .option('--pixel-max <v>', 'white level of the raw pixels, for --superimpose clip', numberArg('--pixel-max', (x) => x > 0, 'a positive number'), STRIP_DEFAULTS.pixelMax)
    .option('--seed <n>', 'seed for the split and the background draws', parseInteger('--seed'), STRIP_DEFAULTS.seed)
    .option('--limit <n>', 'at most n images of each test set (a seeded random subset), to bound the run time', intAtLeast1('--limit'))
    .option('-o, --out <dir>', 'write strip.json and the entropy histogram (strip-entropy.png, .svg) to this folder')
    .option('--force', 'replace the --out folder if it exists')
    .addOption(jsonOption());
  addForwardEngineOption(addModelDataEngineOptions(cmd));
  // STRIP runs groups of N+1 images per forward pass: a larger default batch keeps the engine busy.
  cmd.options.find((o) => o.attributeName() === 'batchSize')!.default(STRIP_DEFAULTS.batchSize);
  cmd.setOptionValueWithSource('batchSize', STRIP_DEFAULTS.batchSize, 'default');
  cmd.addHelpText('after', `
The superimposition adds raw pixels (as stored, 0..255 for the lab's files) and applies --scale (then --mean/--std) after it.
Cost: N+1 images through the model per input. On the Fashion-MNIST lab the wasm backend runs about 5,200
images/s on one core: calibrating on 5,000 images takes ~100 s, every 1,000 test images ~20 s at N = 100.

Examples:
  # measure STRIP on the BadNet lab (goodnet attack / goodnet demo): FRR and FAR at 1% FRR
  goodnet strip -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 \\
      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0 -o lab/strip
  # the same on 1,000 images of each test set, threshold from a normal fit as in the paper
  goodnet strip -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 \\
      --clean-test lab/data/cl/test.h5 --poisoned-test lab/data/bd/bd_test.h5 -t 0 --limit 1000 --method normal
  # check some images: entropy and verdict for each
  goodnet strip -m lab/models/bd_net.h5 --clean-valid lab/data/cl/valid.h5 --inputs suspicious/ photo.png`);
  return cmd.action(async (o: StripCliOpts) => {
    if (!o.inputs?.length && o.cleanTest === undefined && o.poisonedTest === undefined) {
      throw new GoodnetError('nothing to check: give --inputs and/or --clean-test / --poisoned-test');
    }
    checkOutputs({ inputs: [o.model, o.cleanValid, o.cleanTest, o.poisonedTest, ...(o.inputs ?? [])], json: o.json, out: o.out, outFolder: true, force: o.force, outBytes: 1 << 20 });
    await setUp(o);
    const model = await openModel(o.model, o);
    const px = commandPreprocessing(model, o);
    checkForwardEngine(o, model);
    const bars = new Map<StripStage, (d: number, t: number) => void>();
    const r = await runStrip(model, {
      cleanValid: o.cleanValid, cleanTest: o.cleanTest, poisonedTest: o.poisonedTest, target: o.target, inputs: o.inputs,
      n: o.n, frr: o.frr, method: o.method, heldOut: o.heldOut, superimpose: o.superimpose, pixelMax: o.pixelMax,
      seed: o.seed, limit: o.limit, ...px, layout: o.layout, batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads,
      onStage: (st, d, t) => {
        if (!bars.has(st)) bars.set(st, progress(STAGE_LABEL[st]));
        bars.get(st)!(d, t);
      },
    });
    const json = { command: ['goodnet', ...process.argv.slice(2)].join(' '), backend: o.backend, ...r };
    if (o.out !== undefined) await writeStripOutput(o.out, r, json, o.force);
    if (await emitJson(json, o.json, o.force)) return;
    printStrip(r, o.out);
  });
}

function printStrip(r: StripResult, out?: string): void {
  const s = r.settings;
  const how = s.method === 'quantile' ? `quantile of ${r.calibration.images} calibration entropies` : `normal fit to ${r.calibration.images} calibration entropies`;
  console.log(`STRIP: N = ${s.n} clean backgrounds per input (${r.calibration.backgrounds} in the pool, ${s.superimpose === 'clip' ? `added and clipped at ${s.pixelMax}` : 'added, unclipped'}); ` +
    `flagged when H < ${r.threshold.toFixed(4)} bits (${how}, FRR ${percent(s.frr)} asked, ${percent(r.calibration.frr)} on calibration)`);
  if (r.inputs) {
    console.log(`\n${markdownTable(['input', 'true', 'label', 'entropy', 'verdict'], r.inputs.map((v) => [
      v.input, v.truth >= 0 ? String(v.truth) : '-', v.label, v.entropy.toFixed(4), v.flagged ? 'TROJANED' : 'clean',
    ]))}`);
  }
  const rows: (string | number)[][] = [];
  if (r.cleanTest) {
    const c = r.cleanTest;
    rows.push(['FRR: clean images flagged', percent(c.frr), `${c.flagged}/${c.images}`, c.mean.toFixed(4), c.source + (c.images < c.total ? ` (${c.images} of ${c.total})` : '')]);
  }
  if (r.poisonedTest) {
    const p = r.poisonedTest;
    const note = p.labelsAreTarget ? ' (all labels = target)' : p.images < p.total ? ` (${p.images} of ${p.total})` : '';
    rows.push(['FAR: trojaned images accepted', percent(p.far), `${p.accepted}/${p.images}`, p.mean.toFixed(4), p.source + note]);
  }
  if (rows.length) console.log(`\n${markdownTable(['metric', 'value', 'images', 'mean H', 'data'], rows)}`);
  const t = r.timings;
  console.log(`\n${r.forwardPasses.toLocaleString('en-US')} images through the model in ${t.total.toFixed(1)} s ` +
    `(${Math.round(r.imagesPerSecond).toLocaleString('en-US')}/s; calibration ${t.calibration.toFixed(1)} s)` +
    (out !== undefined ? `; wrote ${out}` : ''));
}
