/**
 * goodnet as a library. Every CLI command is a thin wrapper over one of these functions.
 *
 *   import { initBackend, loadModel, evaluate } from 'goodnet';
 *   await initBackend('wasm');
 *   const model = await loadModel('bd_net.h5');
 *   const r = await evaluate(model, { clean: 'cl/test.h5', poisoned: 'bd/bd_test.h5', target: 0 });
 */
export { GoodnetError, EXIT_BAD_INPUT } from './errors.js';
export { initBackend, BACKENDS, type BackendName } from './engine/backend.js';
export { setMaxPoolGradTies, getMaxPoolGradTies, type MaxPoolTies } from './engine/kernels/index.js';
export { OrtEngine, nhwcToNchw, ENGINES, DEFAULT_ENGINE, DEFAULT_ORT_THREADS, type EngineName, type OrtEngineOptions } from './engine/ort.js';
export { loadModel, saveModel, describeModel, saveFormatFor, type LoadedModel, type ModelFormat, type LoadModelOptions, type SaveFormat } from './io/model.js';
export { readKerasH5, writeKerasH5, KERAS_FORMAT_VERSION } from './io/keras.js';
export { readTfjsFolder, writeTfjsFolder, readTfjsPreprocessing } from './io/tfjs_format.js';
export {
  resolvePreprocessing, checkPreprocessing, preprocessingToJson, preprocessingFromJson, preprocessingText, normalizeInPlace, pixelOptionsFor,
  PREPROCESSING_KEY, IDENTITY_PREPROCESSING,
  type Preprocessing, type PreprocessingFlags, type ResolvedPreprocessing, type PixelOptions, type InputLayout,
} from './io/preprocess.js';
export { readKerasZip, writeKerasZip, toKeras3Config, KERAS3_FORMAT_VERSION } from './io/keras3.js';
export { readOnnx, onnxToLayers, looksLikeOnnx, ONNX_OPSETS, type OnnxModel, type OnnxSource, type WeightLink, type WeightTransform } from './io/onnx.js';
export { writeOnnx, onnxBytes, onnxWithWeights, exportOnnx, INPUT_LAYOUT_KEY, EXPORT_OPSET, type OnnxWritable } from './io/onnx_write.js';
export { ONNX_LAYER_CLASSES, OnnxConstArith, OnnxHardSigmoid, OnnxHardSwish, OnnxClip, OnnxSub, OnnxPad2D } from './io/onnx_layers.js';
export { openDataset, checkLabels, type ImageDataset, type Batch, type OpenDatasetOptions } from './io/dataset.js';
export { writeAtomically, checkWritable } from './io/atomic.js';
export { checkOutputPath, type OutputCheck } from './io/paths.js';
export { checkRegularFile, openRegularFile, readRegularFile, refuseSpecialFile, checkPngHeader } from './io/safe_open.js';
export { decodeImage, decodeImageAsync, probeImage, type DecodedImage } from './io/images.js';
export {
  deepId, vgg, resnet, buildArchitecture, architectureFromWeights, isArchitectureName, ARCHITECTURES, ARCHITECTURE_NAMES,
  DEEPID_INPUT, DEEPID_CLASSES, VGG_FILTERS, VGG_UNITS, RESNET_BLOCKS, RESNET_STEM,
  type ArchitectureName, type ArchitectureOptions, type DeepIdOptions, type VggOptions, type ResNetOptions,
} from './models/index.js';
export { inspectModel, zeroOutputChannels, type ModelInspection } from './models/inspect.js';
export { predictDataset, autoBatchSize, firstNonFiniteLayer, topkRows, type Predictions, type PredictOptions } from './eval/predict.js';
export { ortEngineFor, checkOrtExport, forwardEngineFor, setAutoEngineUsesOrt, ortExportOf, onnxSourceCoversNet, type OrtExport } from './eval/ort_model.js';
export { accuracy, attackSuccessRate } from './eval/metrics.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './eval/evaluate.js';
export { classify, type Classified } from './eval/classify.js';
export { runAttack, foldInputScale, ATTACK_DEFAULTS, type AttackOptions, type AttackSummary } from './attack/lab.js';
export { createTrigger, parseTriggerSpec, type Trigger, type TriggerSpec } from './attack/triggers.js';
export { loadBuiltin, loadUserData } from './attack/builtin_data.js';
export { poisonTraining, makePoisonedSet, type PoisonOptions, type PoisonedTraining, type PoisonedSet } from './attack/poison.js';
export { stratifiedSplit, subset, defaultSplitSizes, type Split, type SplitSizes, type SplitOptions } from './attack/split.js';
export { writeCsawSet } from './attack/csaw_layout.js';
export type { LabelledImages } from './attack/types.js';
export { train, datasetAccuracy, type TrainOptions, type TrainingSet, type EpochStats } from './models/train.js';
export { DataParallel, dataParallelObstacle, shardGradients, crossEntropySum, type ShardStep } from './models/parallel.js';
export { runPrune, computePrune, writePrune, disposePrune, PRUNE_DEFAULTS, type PruneOptions, type PruneComputeOptions, type PruneResult, type PruneSummary } from './defense/prune.js';
export { findCutPoint, headModel, tailModel, type CutPoint } from './defense/graph.js';
export { pruneChannels, maskedCopy, applyMaskInPlace, prunedChannels } from './defense/mask.js';
export { sweep, channelOrder, pickThresholds } from './defense/sweep.js';
export { goodnetLabels, goodnetMetrics, evaluateGoodNet, classifyGoodNet } from './defense/goodnet.js';
export type { ActivationProfile, SweepResult, SweepStep, ThresholdPick, GoodNetRow, PruneOrder } from './defense/types.js';
export { writeReport } from './report/build.js';
export { renderReport, type ReportData } from './report/html.js';
export { runDemo, DEMO_MODERN, DEMO_TRAIN_ENGINE, DEMO_CLEAN_IMAGES, type DemoOptions, type DemoResult, type DemoSummary, type DemoPhase } from './demo.js';
export { fineTune, runFinePrune, FINE_TUNE_DEFAULTS, type FineTuneOptions } from './defense/fineprune.js';
export {
  calibrateStrip, runStrip, stripEntropies, stripThreshold, stripFlags, entropy, superimpose, normalQuantile, STRIP_DEFAULTS,
  type StripDetector, type StripResult, type StripScores, type RunStripOptions, type CalibrateOptions, type StripMethod, type SuperimposeMode,
} from './detect/strip.js';
export {
  registerDefense, registeredDefenses, getDefense, derOf, loadCleanData, measure, repairRow,
  type Defense, type DefenseInput, type DefenseRun, type DefenseRow, type Verdict, type ReportSection, type Measurement, type MeasureOptions,
} from './defense/interface.js';
export { runDefense, type RunDefenseOptions, type RunDefenseResult } from './defense/run.js';
export { runNeuralCleanse, reverseTriggers, anomalyIndices, indexBelow, flaggedLabels, NC_DEFAULTS, ANOMALY_SCALES, type AnomalyScale, type NcOptions, type NcDetails } from './defense/nc.js';
export { runAnp, anpMasks, anpPrune, ANP_DEFAULTS, type AnpOptions, type AnpDetails } from './defense/anp.js';
export { runClp, clpPrune, channelLipschitz, CLP_DEFAULTS, type ClpOptions, type ClpDetails } from './defense/clp.js';
export { runRnp, unlearn, recoverMasks, RNP_DEFAULTS, type RnpOptions, type RnpDetails } from './defense/rnp.js';
export { runFst, denseHead, reinitDense, fstHeadStep, augmentBatch, cosineRate, FST_DEFAULTS, type FstOptions, type FstDetails, type FstEpoch, type FstAugment } from './defense/fst.js';
export { runComparison, comparisonTable, BACKDOORBENCH_REFERENCE, QUICK_DEFENSE_OPTIONS, type CompareOptions, type CompareResult } from './defense/comparison.js';
export { stripDefense, STRIP_DEFENSE_DEFAULTS, type StripDefenseOptions, type StripDefenseDetails } from './detect/strip_defense.js';
export { comparisonScatter, defenseSections, readComparisonFolder, secondBadNetSection, type ComparisonFolder } from './report/defenses.js';
export { channelUnits, zeroUnitChannels, type ChannelUnit } from './defense/channels.js';
export { serveWeb, WEB_ROOT, CONTENT_SECURITY_POLICY, type ServeOptions, type RunningServer } from './web/server.js';
export { OrtTrainer, TRAIN_ENGINES, DEFAULT_TRAIN_ENGINE, resolveTrainEngine, type TrainEngineName, type TrainEngineChoice, type OrtTrainerOptions, type OrtStepResult } from './models/ort_train.js';
export { buildTrainGraph, ortTrainObstacle, type TrainGraph, type TrainGraphOptions } from './models/ort_train_graph.js';
export { prepareSweep } from './defense/sweep.js';
export type { FastSweepOptions } from './defense/fastsweep.js';
export { runTriggerUnlearning, unlearningSet, UNLEARN_DEFAULTS, UNLEARN_LABELS, type UnlearnOptions, type UnlearnLabels, type UnlearnDetails, type UnlearnRound } from './defense/unlearn.js';
export { runSau, sharedPgd, SAU_DEFAULTS, type SauOptions, type SauDetails } from './defense/sau.js';
export { pruneExcited, excitationScores, EXCITED_PRUNE_DEFAULTS, type ExcitedPruneOptions, type ExcitedPruneRecord, type ExcitedPruneStep } from './defense/excited.js';
export type { UnlearnHooks } from './defense/unlearn.js';
