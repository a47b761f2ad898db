/**
 * CLP, channel Lipschitzness-based pruning (Zheng et al., ECCV 2022): data-free. For every
 * conv output channel k, an upper bound of its Lipschitz constant: the largest singular value
 * of the kernel slice W_k reshaped to (C_in, kh*kw), times |gamma_k / sqrt(var_k)| of
 * the BatchNormalization that follows the conv (as rkteddy/channel-Lipschitzness-based-pruning
 * defense.py: running variance without epsilon). Within each layer, channels whose bound
 * exceeds mean + u x std (torch's unbiased std) are pruned (BN gamma and beta set to 0, as
 * the original; without BN the conv's kernel slice and bias).
 *
 * Without BN the bound is the kernel's alone. It then ignores the per-channel scale that BN
 * would have folded in, and whatever the next layer does with the channel, so on BN-free
 * networks (the lab's DeepID) CLP is a weaker signal: it can miss backdoor channels whose
 * kernels are not unusually large. Clean data, when given, only measures each u (and, with
 * several, picks the most pruning one within the accuracy budget); CLP itself reads none.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { channelUnits, bnWeights, zeroUnitChannels, type ChannelUnit } from './channels.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, derOf, type Defense, type DefenseInput, type DefenseRun, type ReportSection, repairedSentence,
} from './interface.js';
import { percent as pct } from '../io/table.js';
import { accuracyOf } from './measure_clean.js';

export interface ClpOptions {
  /** Threshold multipliers; several: the smallest whose clean validation accuracy drop stays within `maxDrop`. */
  u: number[];
  /** Accuracy budget (percentage points of clean validation accuracy) when choosing among several u. */
  maxDrop: number;
}

export const CLP_DEFAULTS: ClpOptions = { u: [3], maxDrop: 2 };

/** Largest eigenvalue of a symmetric n x n matrix (row-major), by cyclic Jacobi rotations. */
export function largestEigenvalue(a: Float64Array, n: number): number {
  const m = Float64Array.from(a);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (m[q * n + q]! - m[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = m[k * n + p]!;
          const akq = m[k * n + q]!;
          m[k * n + p] = c * akp - s * akq;
          m[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = m[p * n + k]!;
          const aqk = m[q * n + k]!;
          m[p * n + k] = c * apk - s * aqk;
          m[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  let best = -Infinity;
  for (let i = 0; i < n; i++) best = Math.max(best, m[i * n + i]!);
  return best;
}

/** Largest singular value of a rows x cols matrix (row-major), via the smaller Gram matrix. */
export function spectralNorm(x: ArrayLike<number>, rows: number, cols: number): number {
  const n = Math.min(rows, cols);
  const g = new Float64Array(n * n);
  if (cols <= rows) {
    for (let i = 0; i < cols; i++) for (let j = i; j < cols; j++) {
      let s = 0;
      for (let r = 0; r < rows; r++) s += x[r * cols + i]! * x[r * cols + j]!;
      g[i * n + j] = s;
      g[j * n + i] = s;
    }
  } else {
    for (let i = 0; i < rows; i++) for (let j = i; j < rows; j++) {
      let s = 0;
      for (let k = 0; k < cols; k++) s += x[i * cols + k]! * x[j * cols + k]!;
      g[i * n + j] = s;
      g[j * n + i] = s;
    }
  }
  return Math.sqrt(Math.max(0, largestEigenvalue(g, n)));
}

export interface ClpLayer {
  conv: string;
  /** 'bn': bound includes the following BatchNormalization; 'conv': kernel alone (less reliable). */
  kind: 'bn' | 'conv';
  channels: number;
  /** Upper bound of each channel's Lipschitz constant (UCLC). */
  uclc: number[];
  mean: number;
  std: number;
}

/** UCLC of every conv channel of the network. */
export function channelLipschitz(net: tfl.LayersModel): { unit: ChannelUnit; layer: ClpLayer }[] {
  return channelUnits(net).map((unit) => {
    const conv = net.getLayer(unit.conv);
    const kernel = conv.getWeights()[0]!;
    const [kh, kw, cin, cout] = kernel.shape as [number, number, number, number];
    const k = kernel.dataSync();
    let scale: Float32Array | undefined;
    if (unit.kind === 'bn') {
      const bn = bnWeights(net.getLayer(unit.layer));
      // As the original (defense.py): |gamma / sqrt(running_var)|, without BN's epsilon
      // (which only guards a variance of exactly 0 here).
      const g = bn.gamma?.dataSync();
      const v = bn.variance.dataSync();
      scale = Float32Array.from(v, (x, i) => Math.abs((g ? g[i]! : 1) / Math.sqrt(x > 0 ? x : bn.epsilon)));
    }
    const uclc: number[] = [];
    const m = new Float64Array(cin * kh * kw);
    for (let o = 0; o < cout; o++) {
      // W_o as (C_in, kh*kw): kernel is (kh, kw, C_in, C_out).
      for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) for (let ci = 0; ci < cin; ci++) {
        m[ci * kh * kw + i * kw + j] = k[((i * kw + j) * cin + ci) * cout + o]!;
      }
      uclc.push(spectralNorm(m, cin, kh * kw) * (scale ? scale[o]! : 1));
    }
    const mean = uclc.reduce((a, b) => a + b, 0) / cout;
    // torch.Tensor.std, as the original: the unbiased (n - 1) estimate.
    const std = cout > 1 ? Math.sqrt(uclc.reduce((a, b) => a + (b - mean) ** 2, 0) / (cout - 1)) : 0;
    return { unit, layer: { conv: unit.conv, kind: unit.kind, channels: cout, uclc, mean, std } };
  });
}

/** Channels above mean + u x std, per layer. */
export function clpPrunePlan(layers: ClpLayer[], u: number): Record<string, number[]> {
  const plan: Record<string, number[]> = {};
  for (const l of layers) {
    const t = l.mean + u * l.std;
    plan[l.conv] = l.uclc.flatMap((v, i) => (v > t ? [i] : []));
  }
  return plan;
}

/** A copy of `net` with CLP's channels removed for one u. */
export async function clpPrune(net: tfl.LayersModel, u: number): Promise<{ net: tfl.LayersModel; plan: Record<string, number[]>; layers: ClpLayer[] }> {
  const found = channelLipschitz(net);
  if (found.length === 0) throw new GoodnetError('the model has no Conv2D layer; CLP prunes conv channels');
  const layers = found.map((f) => f.layer);
  const plan = clpPrunePlan(layers, u);
  const copy = await cloneNet(net);
  for (const f of found) zeroUnitChannels(copy, f.unit, plan[f.unit.conv]!);
  return { net: copy, plan, layers };
}

export interface ClpCandidate {
  u: number;
  pruned: number;
  plan: Record<string, number[]>;
  /** Clean validation accuracy (when clean data was given). */
  validAccuracy?: number;
}

export interface ClpDetails {
  layers: ClpLayer[];
  candidates: ClpCandidate[];
  chosen: number;
  baseValidAccuracy?: number;
  /** Convs without a following BN, whose bound is the kernel alone. */
  withoutBn: string[];
  settings: ClpOptions;
}

/** CLP: data-free pruning; clean data (optional) only measures the candidates and picks among several u. */
export async function runClp(input: Partial<DefenseInput> & Pick<DefenseInput, 'model'>, options: Partial<ClpOptions> = {}): Promise<DefenseRun<ClpDetails>> {
  const o: ClpOptions = { ...CLP_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  if (o.u.length === 0 || o.u.some((u) => !(Number.isFinite(u) && u >= 0))) throw new GoodnetError(`--u must be one or more numbers >= 0, got ${o.u.join(',')}`);
  const t0 = performance.now();
  const clean = input.cleanValid !== undefined ? await loadCleanData(input as DefenseInput) : undefined;
  const us = [...o.u].sort((a, b) => a - b);
  const candidates: (ClpCandidate & { net: tfl.LayersModel })[] = [];
  let layers: ClpLayer[] = [];
  let base: number | undefined;
  try {
    if (clean) base = await accuracyOf(input.model.net, clean, input.batchSize);
    for (const u of us) {
      const r = await clpPrune(input.model.net, u);
      layers = r.layers;
      const pruned = Object.values(r.plan).reduce((a, p) => a + p.length, 0);
      const validAccuracy = clean ? await accuracyOf(r.net, clean, input.batchSize) : undefined;
      candidates.push({ u, pruned, plan: r.plan, validAccuracy, net: r.net });
      input.log?.(`CLP u=${u}: ${pruned} channels${validAccuracy !== undefined ? `, clean validation accuracy ${(validAccuracy * 100).toFixed(2)}%` : ''}`);
    }
    // Smallest u (most pruning) within the budget; the largest u when none is.
    let chosen = candidates.length - 1;
    if (base !== undefined && candidates.length > 1) {
      const ok = candidates.findIndex((c) => (base! - c.validAccuracy!) * 100 <= o.maxDrop);
      if (ok >= 0) chosen = ok;
    }
    const repaired = candidates[chosen]!.net;
    for (const [i, c] of candidates.entries()) if (i !== chosen) c.net.dispose();
    const withoutBn = layers.filter((l) => l.kind === 'conv').map((l) => l.conv);
    return {
      defense: 'clp', repaired, cleanImages: clean?.n ?? 0, seconds: (performance.now() - t0) / 1000,
      details: { layers, candidates: candidates.map(({ net: _n, ...c }) => c), chosen: us[chosen]!, baseValidAccuracy: base, withoutBn, settings: o },
    };
  } catch (err) {
    for (const c of candidates) c.net.dispose();
    throw err;
  }
}

export const clp: Defense<ClpOptions, ClpDetails> = registerDefense<ClpOptions, ClpDetails>({
  name: 'clp',
  title: 'CLP (channel Lipschitzness pruning)',
  summary: 'data-free: prunes conv channels whose Lipschitz upper bound exceeds mean + u x std of their layer',
  kind: 'repair',
  defaults: CLP_DEFAULTS,
  run: runClp,
  rows: (run, m) => {
    if (!m.after) return [];
    const d = run.details;
    const c = d.candidates.find((x) => x.u === d.chosen)!;
    return [{
      defense: `CLP u=${d.chosen} (${c.pruned} channels)`, ...m.after, der: derOf(m.before, m.after), cleanImages: run.cleanImages, seconds: run.seconds,
      ...(d.withoutBn.length ? { note: `no BN after ${d.withoutBn.join(', ')}: kernel-only bound` } : {}),
    }];
  },
  section: (run, m): ReportSection => {
    const d = run.details;
    return {
      title: 'CLP (channel Lipschitzness pruning)',
      text: [
        `Data-free: per conv channel, the largest singular value of its kernel slice${d.withoutBn.length < d.layers.length ? ' times |gamma/sqrt(var)| of its BN' : ''}; ` +
          `channels above mean + u x std of their layer are pruned. Chosen u = ${d.chosen}.`,
        ...(d.withoutBn.length ? [`${d.withoutBn.join(', ')} ${d.withoutBn.length === 1 ? 'has' : 'have'} no BatchNormalization after it: the bound is the kernel's alone, ` +
          'which ignores the per-channel scale BN would fold in, so CLP is less reliable on this network (it can miss backdoor channels with ordinary kernels).'] : []),
        ...repairedSentence(m),
      ],
      tables: [
        { caption: 'candidates', headers: ['u', 'channels pruned', 'clean validation accuracy'], rows: d.candidates.map((c) => [c.u, c.pruned, c.validAccuracy === undefined ? '-' : pct(c.validAccuracy)]) },
        { caption: 'layers', headers: ['conv', 'bound', 'channels', 'mean UCLC', 'std', 'pruned at chosen u'],
          rows: d.layers.map((l) => [l.conv, l.kind === 'bn' ? 'kernel x BN' : 'kernel only', l.channels, l.mean.toFixed(3), l.std.toFixed(3),
            (d.candidates.find((c) => c.u === d.chosen)!.plan[l.conv] ?? []).join(' ') || '-']) },
      ],
    };
  },
});
