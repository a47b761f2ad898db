import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { loadModel, saveModel } from '../src/io/model.js';
import '../src/models/index.js'; // weights-only Keras files load into the registered architectures
import { writeKerasH5 } from '../src/io/keras.js';
import type { JsonObject } from '../src/io/keras_config.js';
import { bitEqual, predictArray, sameWeights, tempDir } from './helpers.js';

await initBackend('wasm');

/** A small functional net using every layer type the loader promises. */
function allLayersNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [12, 10, 3], name: 'input' });
  const c1 = tfl.layers.conv2d({ name: 'conv_a', filters: 4, kernelSize: 3, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  const bn = tfl.layers.batchNormalization({ name: 'bn' }).apply(c1) as tfl.SymbolicTensor;
  const r = tfl.layers.reLU({ name: 'relu' }).apply(bn) as tfl.SymbolicTensor;
  const mp = tfl.layers.maxPooling2d({ name: 'maxpool', poolSize: 2 }).apply(r) as tfl.SymbolicTensor;
  const ap = tfl.layers.averagePooling2d({ name: 'avgpool', poolSize: 2 }).apply(r) as tfl.SymbolicTensor;
  const cat = tfl.layers.concatenate({ name: 'concat' }).apply([mp, ap]) as tfl.SymbolicTensor;
  const f = tfl.layers.flatten({ name: 'flat' }).apply(cat) as tfl.SymbolicTensor;
  const d1 = tfl.layers.dense({ name: 'dense_a', units: 6 }).apply(f) as tfl.SymbolicTensor;
  const d2 = tfl.layers.dense({ name: 'dense_b', units: 6 }).apply(f) as tfl.SymbolicTensor;
  const add = tfl.layers.add({ name: 'add' }).apply([d1, d2]) as tfl.SymbolicTensor;
  const act = tfl.layers.activation({ name: 'act', activation: 'tanh' }).apply(add) as tfl.SymbolicTensor;
  const drop = tfl.layers.dropout({ name: 'drop', rate: 0.3 }).apply(act) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ name: 'out', units: 5, activation: 'softmax' }).apply(drop) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out, name: 'all_layers' });
  // Non-trivial BN statistics, so a mix-up of moving_mean and moving_variance would show.
  const bnLayer = net.getLayer('bn');
  bnLayer.setWeights(bnLayer.getWeights().map((w, i) => tf.add(tf.randomUniform(w.shape, 0.5, 1.5, 'float32', 7 + i), 0)));
  return net;
}

function sequentialNet(): tfl.Sequential {
  const net = tfl.sequential({ name: 'seq' });
  net.add(tfl.layers.conv2d({ name: 'c1', inputShape: [8, 8, 1], filters: 3, kernelSize: 3, activation: 'relu' }));
  net.add(tfl.layers.maxPooling2d({ name: 'p1', poolSize: 2 }));
  net.add(tfl.layers.flatten({ name: 'f' }));
  net.add(tfl.layers.dense({ name: 'd', units: 4, activation: 'softmax' }));
  return net;
}

const input = (shape: number[]) => tf.randomUniform([3, ...shape], 0, 1, 'float32', 42);

test('Keras HDF5 round trip of every supported layer type is bit-identical', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const net = allLayersNet();
    const x = input([12, 10, 3]);
    const path = join(dir, 'm.h5');
    await saveModel(net, path);
    const a = await loadModel(path);
    assert.equal(a.format, 'keras-full');
    assert.ok(sameWeights(net, a.net));
    assert.ok(bitEqual(predictArray(net, x), predictArray(a.net, x)));
    // And again from the loaded model (which now carries the file's own config).
    const path2 = join(dir, 'm2.h5');
    await saveModel(a, path2);
    const b = await loadModel(path2);
    assert.ok(sameWeights(a.net, b.net));
    assert.ok(bitEqual(predictArray(a.net, x), predictArray(b.net, x)));
  } finally {
    cleanup();
  }
});

test('tfjs folder round trip is bit-identical, and tfjs -> Keras -> tfjs too', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const net = allLayersNet();
    const x = input([12, 10, 3]);
    await saveModel(net, join(dir, 'tfjs'));
    const a = await loadModel(join(dir, 'tfjs'));
    assert.equal(a.format, 'tfjs');
    assert.ok(sameWeights(net, a.net));
    await saveModel(a, join(dir, 'k.h5'));
    await saveModel(await loadModel(join(dir, 'k.h5')), join(dir, 'tfjs2'));
    const c = await loadModel(join(dir, 'tfjs2', 'model.json'));
    assert.ok(sameWeights(net, c.net));
    assert.ok(bitEqual(predictArray(net, x), predictArray(c.net, x)));
  } finally {
    cleanup();
  }
});

test('sequential models round trip in both formats', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const net = sequentialNet();
    const x = input([8, 8, 1]);
    for (const p of ['s.h5', 's_tfjs']) {
      await saveModel(net, join(dir, p));
      const m = await loadModel(join(dir, p));
      assert.deepEqual(m.inputShape, [8, 8, 1]);
      assert.equal(m.numClasses, 4);
      assert.ok(bitEqual(predictArray(net, x), predictArray(m.net, x)));
    }
  } finally {
    cleanup();
  }
});

test('saveModel refuses to overwrite unless asked, and leaves no temp files', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const net = sequentialNet();
    const path = join(dir, 's.h5');
    await saveModel(net, path);
    await assert.rejects(saveModel(net, path), /already exists/);
    await saveModel(net, path, { overwrite: true });
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(readdirSync(dir), ['s.h5']);
  } finally {
    cleanup();
  }
});

// ---- Keras dialects: the same weights under the model_config JSON each Keras version writes.

type Obj = JsonObject;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function tfjsConfig(net: tfl.LayersModel): Obj {
  return net.toJSON(null, false) as unknown as Obj;
}

/** Keras 2.2.4: class "Model", layer entries {name, class_name, config, inbound_nodes}, no dtype on layers. */
function keras224(cfg: Obj): Obj {
  const c = clone(cfg);
  c.class_name = 'Model';
  for (const l of (c.config as Obj).layers as Obj[]) {
    delete (l.config as Obj).dtype;
    if (l.class_name === 'InputLayer') (l.config as Obj).dtype = 'float32';
  }
  return c;
}

/** Keras 2.13: "Functional", module/registered_name/build_config keys, BN axis as a list, ReLU extras. */
function keras213(cfg: Obj): Obj {
  const c = clone(cfg);
  c.class_name = 'Functional';
  const addModule = (o: unknown, module: string): void => {
    if (o && typeof o === 'object' && 'class_name' in (o as Obj)) Object.assign(o as Obj, { module, registered_name: null });
  };
  for (const l of (c.config as Obj).layers as Obj[]) {
    const lc = l.config as Obj;
    Object.assign(l, { module: 'keras.layers', registered_name: null, build_config: { input_shape: [null, 12, 10, 3] } });
    for (const v of Object.values(lc)) addModule(v, 'keras.initializers');
    if (l.class_name === 'Conv2D') lc.groups = 1;
    if (l.class_name === 'BatchNormalization') {
      lc.axis = [3];
      lc.synchronized = false;
    }
    if (l.class_name === 'ReLU') Object.assign(lc, { negative_slope: 0.0, threshold: 0.0 });
    if (l.class_name === 'InputLayer') lc.ragged = false;
    lc.dtype = { class_name: 'Policy', config: { name: 'float32' } };
  }
  return c;
}

/** Keras 2.2.0-2.2.2 Sequential: config is the bare list of layers. */
function kerasSequentialList(cfg: Obj): Obj {
  const c = clone(cfg);
  return { class_name: 'Sequential', config: (c.config as Obj).layers };
}

for (const [name, dialect, make] of [
  ['Keras 2.2.4 functional', keras224, allLayersNet],
  ['Keras 2.13 functional', keras213, allLayersNet],
  ['Keras 2.2.0 list-style Sequential', kerasSequentialList, sequentialNet],
  ['Keras 2.13 Sequential', (c: Obj) => ({ ...keras213(c), class_name: 'Sequential' }), sequentialNet],
] as const) {
  test(`loads a ${name} model_config with the right weights`, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const net = make();
      const path = join(dir, 'k.h5');
      await writeKerasH5(net, path, dialect(tfjsConfig(net)));
      const m = await loadModel(path);
      const x = input(m.inputShape);
      assert.ok(sameWeights(net, m.net));
      assert.ok(bitEqual(predictArray(net, x), predictArray(m.net, x)));
    } finally {
      cleanup();
    }
  });
}

test('a leaky ReLU or a mixed-precision policy is refused by name', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const net = allLayersNet();
    const leaky = keras213(tfjsConfig(net));
    for (const l of (leaky.config as Obj).layers as Obj[]) if (l.class_name === 'ReLU') (l.config as Obj).negative_slope = 0.1;
    await writeKerasH5(net, join(dir, 'leaky.h5'), leaky);
    await assert.rejects(loadModel(join(dir, 'leaky.h5')), /leaky\.h5: ReLU 'relu' with negative_slope=0\.1 is not supported/);
    const mixed = keras213(tfjsConfig(net));
    for (const l of (mixed.config as Obj).layers as Obj[]) (l.config as Obj).dtype = { class_name: 'Policy', config: { name: 'mixed_float16' } };
    await writeKerasH5(net, join(dir, 'mixed.h5'), mixed);
    await assert.rejects(loadModel(join(dir, 'mixed.h5')), /mixed\.h5: dtype policy 'mixed_float16' is not supported/);
  } finally {
    cleanup();
  }
});
