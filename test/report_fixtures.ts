/**
 * Synthetic but realistically shaped defense results for the report tests: a 60-channel
 * conv_3, sweeps of 61 steps (ascending: accuracy holds, then falls; ASR stays high until
 * late; descending: accuracy collapses at once), picks for X = 2, 4, 10 and GoodNet rows.
 */
import type { ActivationProfile, GoodNetRow, PruneOrder, SweepResult, SweepStep, ThresholdPick } from '../src/defense/types.js';
import { reportFigures, type Figure, type SampleGridInput } from '../src/report/figures.js';
import type { ReportData } from '../src/report/html.js';

export const CHANNELS = 60;
export const THRESHOLDS = [2, 4, 10];
export const BASELINE = { validAccuracy: 0.9064, validAsr: 0.9994, testAccuracy: 0.9052, testAsr: 0.999 };
export const CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** mulberry32: a small seeded PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
const smoothstep = (a: number, b: number, x: number) => {
  const t = clamp01((x - a) / (b - a));
  return t * t * (3 - 2 * t);
};

export function syntheticProfile(channels = CHANNELS): ActivationProfile {
  const r = rng(7);
  // A dozen dormant channels, the rest spread out with a few very active ones.
  const mean = Array.from({ length: channels }, (_, i) => (i % 5 === 2 ? 0 : Number((Math.pow(r(), 2.2) * 4.5 + 0.02).toFixed(4))));
  return { poolLayer: 'pool_3', convLayer: 'conv_3', channels, mean, images: 10000, source: 'data/cl/valid.h5' };
}

function curve(order: PruneOrder, f: number, base: number): { accuracy: number; asr: number } {
  if (order === 'asc') {
    const fall = f > 0.62 ? 0.8 * ((f - 0.62) / 0.38) ** 2 : 0;
    return {
      accuracy: Math.max(0.1, base - 0.015 * f - fall),
      asr: 0.999 * (1 - smoothstep(0.6, 0.78, f)) + 0.004,
    };
  }
  return {
    accuracy: Math.max(0.1, base - (base - 0.1) * (1 - Math.exp(-((f / 0.2) ** 1.5)))),
    asr: 0.999 * (1 - 0.25 * smoothstep(0.4, 1, f)),
  };
}

export function syntheticSweep(order: PruneOrder, profile = syntheticProfile()): SweepResult {
  const n = profile.channels;
  const sign = order === 'asc' ? 1 : -1;
  const channelOrder = profile.mean.map((_, i) => i).sort((a, b) => sign * (profile.mean[a]! - profile.mean[b]!) || a - b);
  const r = rng(order === 'asc' ? 11 : 12);
  const steps: SweepStep[] = [];
  for (let k = 0; k <= n; k++) {
    const f = k / n;
    const c = curve(order, f, BASELINE.validAccuracy);
    const noise = k === 0 ? 0 : (r() - 0.5) * 0.002;
    steps.push({
      step: k,
      channel: k === 0 ? null : channelOrder[k - 1]!,
      fractionPruned: f,
      accuracy: k === 0 ? BASELINE.validAccuracy : clamp01(c.accuracy + noise),
      asr: k === 0 ? BASELINE.validAsr : clamp01(c.asr + noise),
    });
  }
  const picks: ThresholdPick[] = THRESHOLDS.map((X) => {
    const s = steps.find((st) => (steps[0]!.accuracy - st.accuracy) * 100 >= X);
    const step = s ? s.step : null;
    return {
      threshold: X,
      rule: 'first-drop',
      step,
      pruned: channelOrder.slice(0, step ?? 0),
      fractionPruned: s ? s.fractionPruned : 1,
      validAccuracy: s ? s.accuracy : NaN,
      validAsr: s ? s.asr : NaN,
      ...(s ? { model: { keras: `repaired/${order}_${X}.h5`, tfjs: `repaired/${order}_${X}` } } : {}),
    };
  });
  return { order, poolLayer: profile.poolLayer, convLayer: profile.convLayer, channels: n, channelOrder, steps, picks, seconds: order === 'asc' ? 412.5 : 398.1 };
}

export function syntheticRows(sweeps: SweepResult[]): GoodNetRow[] {
  const rows: GoodNetRow[] = [];
  for (const s of sweeps) {
    for (const p of s.picks) {
      if (p.step === null) continue;
      const acc = clamp01(p.validAccuracy - 0.003);
      const asr = clamp01(p.validAsr - 0.002);
      const falseAlarm = clamp01((BASELINE.testAccuracy - acc) * 0.85 + 0.004);
      const gAsr = clamp01(asr * 0.97);
      rows.push({
        order: s.order,
        threshold: p.threshold,
        fractionPruned: p.fractionPruned,
        repaired: { accuracy: acc, asr },
        goodnet: { accuracy: clamp01(acc - 0.012), asr: gAsr, detectionRate: clamp01(1 - gAsr - 0.004), falseAlarmRate: falseAlarm },
      });
    }
  }
  return rows;
}

/** n grey (or RGB) garment-like blobs; `poisoned` stamps a 4x4 checkerboard bottom-right. */
export function syntheticImages(n: number, h = 28, w = 28, c = 1, poisoned = false, seed = 3): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n * h * w * c);
  for (let i = 0; i < n; i++) {
    const cx = w / 2 + (r() - 0.5) * 4;
    const cy = h / 2 + (r() - 0.5) * 4;
    const rx = w * (0.22 + r() * 0.18);
    const ry = h * (0.28 + r() * 0.15);
    const tint = [0.6 + r() * 0.4, 0.6 + r() * 0.4, 0.6 + r() * 0.4];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2;
        let v = d < 1 ? 120 + 110 * (1 - d) + (r() - 0.5) * 30 : 0;
        if (poisoned && x >= w - 5 && x < w - 1 && y >= h - 5 && y < h - 1) v = (x + y) % 2 === 0 ? 255 : 0;
        for (let ch = 0; ch < c; ch++) out[((i * h + y) * w + x) * c + ch] = Math.max(0, Math.min(255, Math.round(c === 1 ? v : v * tint[ch]!)));
      }
    }
  }
  return out;
}

export function sampleInputs(n = 10): { clean: Omit<SampleGridInput, 'name'>; poisoned: Omit<SampleGridInput, 'name'> } {
  const labels = Array.from({ length: n }, (_, i) => i % 10);
  const preds = labels.map((l, i) => (i === 3 ? l : 0));
  return {
    clean: {
      images: syntheticImages(n),
      n,
      height: 28,
      width: 28,
      channels: 1,
      captions: labels.map((l) => `${l}: ${CLASS_NAMES[l]}`),
      columns: 5,
      title: 'Clean test images',
      subtitle: 'True label and class name.',
    },
    poisoned: {
      images: syntheticImages(n, 28, 28, 1, true),
      n,
      height: 28,
      width: 28,
      channels: 1,
      captions: labels.map((l, i) => `true: ${l} ${CLASS_NAMES[l]}\nBadNet: ${preds[i]} ${CLASS_NAMES[preds[i]!]}`),
      emphasis: preds.map((p, i) => p === 0 && labels[i] !== 0),
      columns: 5,
      title: 'Poisoned test images (checkerboard trigger, target 0)',
      subtitle: 'True label and the BadNet’s answer; red where the trigger sent it to the target.',
    },
  };
}

export interface SyntheticResults {
  profile: ActivationProfile;
  sweeps: SweepResult[];
  rows: GoodNetRow[];
}

export function syntheticResults(): SyntheticResults {
  const profile = syntheticProfile();
  const sweeps = [syntheticSweep('asc', profile), syntheticSweep('desc', profile)];
  return { profile, sweeps, rows: syntheticRows(sweeps) };
}

export async function syntheticFigures(res = syntheticResults()): Promise<Figure[]> {
  const samples = sampleInputs();
  const asc4 = res.sweeps[0]!.picks.find((p) => p.threshold === 4)!;
  return reportFigures({
    profile: res.profile,
    profileHighlight: { channels: asc4.pruned, label: 'pruned in B′ (ascending, X = 4)' },
    sweeps: res.sweeps,
    rows: res.rows,
    baseline: { accuracy: BASELINE.testAccuracy, asr: BASELINE.testAsr },
    cleanSamples: samples.clean,
    poisonedSamples: samples.poisoned,
  });
}

export async function syntheticReportData(overrides: Partial<ReportData> = {}): Promise<ReportData> {
  const res = syntheticResults();
  const figures = overrides.figures ?? (await syntheticFigures(res));
  const hash = (s: string) => (s.repeat(64) + '0'.repeat(64)).slice(0, 64);
  return {
    title: 'goodnet report: pruning defense against a Fashion-MNIST BadNet',
    generatedAt: '2025-01-01T12:00:00.000Z',
    commands: [
      'npx goodnet attack --out lab',
      'npx goodnet prune -m lab/models/bd_net.h5 --valid lab/data/cl/valid.h5 --poisoned lab/data/bd/bd_valid.h5 -t 0 --out defense',
      'npx goodnet report defense --out report.html',
    ],
    model: { path: 'lab/models/bd_net.h5', sha256: hash('ab'), format: 'keras-h5', inputShape: [32, 32, 1], numClasses: 10 },
    data: [
      { role: 'clean validation', path: 'lab/data/cl/valid.h5', sha256: hash('c1'), images: 10000 },
      { role: 'poisoned validation', path: 'lab/data/bd/bd_valid.h5', sha256: hash('d1'), images: 9000 },
      { role: 'clean test', path: 'lab/data/cl/test.h5', sha256: hash('c2'), images: 10000 },
      { role: 'poisoned test', path: 'lab/data/bd/bd_test.h5', sha256: hash('d2'), images: 9000 },
    ],
    target: 0,
    targetName: 'T-shirt/top',
    baseline: BASELINE,
    profile: res.profile,
    sweeps: res.sweeps,
    goodnet: res.rows,
    figures,
    versions: { goodnet: '0.1.0', node: process.version, '@tensorflow/tfjs-core': '4.22.0', backend: 'wasm' },
    timings: { profile: 3.2, 'sweep asc': 412.5, 'sweep desc': 398.1, 'goodnet eval': 61.7, total: 880.4 },
    notes: ['Synthetic data for tests: the numbers are made up.'],
    ...overrides,
  };
}
