/**
 * The two nets of the non-DeepID sweep benchmarks (bench/prune_any.ts, bench/sweep_profile.ts):
 * random weights from fixed seeds, so both scripts build the same nets. Build them with
 * `benchNets()` (mnist first, then resnet: the seeds are drawn in that order).
 */
import * as tfl from '@tensorflow/tfjs-layers';

type ST = tfl.SymbolicTensor;

let seed = 0;
const init = () => tfl.initializers.glorotUniform({ seed: seed++ });
const binit = () => tfl.initializers.randomNormal({ seed: seed++, stddev: 0.1 });

function mnistNet(): tfl.LayersModel {
  return tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 16, kernelSize: 5, activation: 'relu', kernelInitializer: init(), biasInitializer: binit() }),
    tfl.layers.averagePooling2d({ poolSize: 2 }),
    tfl.layers.conv2d({ filters: 32, kernelSize: 5, activation: 'relu', kernelInitializer: init(), biasInitializer: binit() }),
    tfl.layers.averagePooling2d({ poolSize: 2 }),
    tfl.layers.flatten(),
    tfl.layers.dense({ units: 128, activation: 'relu', kernelInitializer: init(), biasInitializer: binit() }),
    tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(), biasInitializer: binit() }),
  ] });
}

function resNet(): tfl.LayersModel {
  const conv = (f: number, act: 'relu' | 'linear') => tfl.layers.conv2d({ filters: f, kernelSize: 3, padding: 'same', activation: act, kernelInitializer: init(), biasInitializer: binit() });
  const input = tfl.input({ shape: [32, 32, 3] });
  let x = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(conv(32, 'relu').apply(input)) as ST;
  for (let b = 0; b < 2; b++) {
    let y = tfl.layers.activation({ activation: 'relu' }).apply(tfl.layers.batchNormalization({}).apply(conv(32, 'linear').apply(x))) as ST;
    y = tfl.layers.batchNormalization({}).apply(conv(32, 'linear').apply(y)) as ST;
    x = tfl.layers.activation({ activation: 'relu' }).apply(tfl.layers.add().apply([x, y])) as ST;
  }
  const out = tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(), biasInitializer: binit() }).apply(tfl.layers.globalAveragePooling2d({}).apply(x)) as ST;
  return tfl.model({ inputs: input, outputs: out });
}

/** Both nets, always built in the same order (the same seeds whichever one a script times). */
export function benchNets(): { mnist: tfl.LayersModel; resnet: tfl.LayersModel } {
  seed = 0;
  const mnist = mnistNet();
  return { mnist, resnet: resNet() };
}
