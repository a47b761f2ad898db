/** Data shapes the pruning defense produces and the report consumes (all JSON-able). */

export type PruneOrder = 'asc' | 'desc';

/** 'first-drop': the paper's rule, the first model whose accuracy dropped by >= X points.
 *  'last-within': the model just before it (the last one still within X points). */
export type ThresholdRule = 'first-drop' | 'last-within';

/** Mean activation of each channel of the last pooling layer over clean validation data. */
export interface ActivationProfile {
  /** The pooling layer profiled (e.g. pool_3) and the conv layer whose channels are pruned (conv_3). */
  poolLayer: string;
  convLayer: string;
  channels: number;
  /** Mean over images and positions, per channel. */
  mean: number[];
  images: number;
  source: string;
}

/** One step of a sweep: after pruning `channel` (null for the unpruned model, step 0). */
export interface SweepStep {
  step: number;
  channel: number | null;
  fractionPruned: number;
  /** Clean validation accuracy, 0..1. */
  accuracy: number;
  /** Attack success rate on poisoned validation data, 0..1. */
  asr: number;
}

/** The repaired model B'_X picked for one threshold. */
export interface ThresholdPick {
  /** X, in percentage points of clean validation accuracy. */
  threshold: number;
  rule: ThresholdRule;
  /** Sweep step of the picked model; null when the drop never reached X. */
  step: number | null;
  /** Channels pruned in B'_X, in pruning order. */
  pruned: number[];
  fractionPruned: number;
  validAccuracy: number;
  validAsr: number;
  /** Where B'_X was saved (relative to the output folder), when it was. */
  model?: SavedModelPaths;
}

export interface SweepResult {
  order: PruneOrder;
  poolLayer: string;
  convLayer: string;
  channels: number;
  /** Pruning order of channels (the whole layer, even when the sweep stopped early). */
  channelOrder: number[];
  steps: SweepStep[];
  picks: ThresholdPick[];
  seconds: number;
  /** How the sweep ran: the incremental DeepID path or the general tail-mask path; image-steps recomputed exactly. */
  stats?: { path: 'incremental' | 'tail-mask'; kind?: string; engine?: 'tfjs' | 'ort' | 'js' | 'wasm'; recomputed: number; outputRuns?: number; seconds?: { incremental: number; recompute: number } };
}

/** Test-set performance of B'_X and of the GoodNet G_X built from B and B'_X. */
export interface GoodNetRow {
  order: PruneOrder;
  threshold: number;
  fractionPruned: number;
  repaired: { accuracy: number; asr: number };
  goodnet: {
    /** Clean test accuracy of G (an N+1 answer on a clean input counts as wrong). */
    accuracy: number;
    /** Share of poisoned inputs G sends to the target. */
    asr: number;
    /** Share of poisoned inputs G answers N+1 ("backdoor"). */
    detectionRate: number;
    /** Share of clean inputs G answers N+1. */
    falseAlarmRate: number;
  };
}

/** A fine-pruned model FP_X: B'_X fine-tuned on clean validation data, and its test performance. */
export interface FinePruneRow {
  order: PruneOrder;
  threshold: number;
  fractionPruned: number;
  epochs: number;
  learningRate: number;
  /** Epoch kept (best held-out clean accuracy; 0 = B'_X unchanged). */
  bestEpoch: number;
  /** Held-out clean validation accuracy per epoch (0 = before fine-tuning). */
  heldOutAccuracy: number[];
  /** Test performance of B'_X (before) and FP_X (after); absent without test sets. */
  before?: { accuracy: number; asr: number };
  after?: { accuracy: number; asr: number };
  seconds: number;
  model?: SavedModelPaths;
}

/** Where a repaired model was written, relative to the output folder: always Keras HDF5 and tfjs; ONNX and Keras 3 when the input was. */
export interface SavedModelPaths {
  keras: string;
  tfjs: string;
  onnx?: string;
  keras3?: string;
}
