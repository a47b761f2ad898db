#!/usr/bin/env python3
"""onnxruntime peer of goodnet's DeepID inference: the lab's DeepID (55x47x3 -> 1283 classes,
NCHW here) built with onnx.helper, random weights, batch 64, random inputs. Runs it with
intra-op threads 1 and 2 (--threads) and prints one JSON line per run with images/s of wall
time and of process CPU time (bench/goals.ts runs it with pyenv's python3).
With --model FILE it runs that ONNX graph instead (goodnet's own export of the model, so both
sides run the same graph), fed random inputs of its declared input shape."""
import argparse, json, time
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument('--batches', type=int, default=20)
ap.add_argument('--batch', type=int, default=64)
ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
ap.add_argument('--model', default=None)
a = ap.parse_args()
rng = np.random.default_rng(0)
inits, nodes = [], []

def w(name, *shape):
    inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(np.float32), name))
    return name

def conv(x, name, cin, cout, k):
    nodes.append(helper.make_node('Conv', [x, w(name + '_w', cout, cin, k, k), w(name + '_b', cout)], [name]))
    nodes.append(helper.make_node('Relu', [name], [name + '_r']))
    return name + '_r'

def pool(x, name):
    nodes.append(helper.make_node('MaxPool', [x], [name], kernel_shape=[2, 2], strides=[2, 2]))
    return name

def dense(x, name, cin, cout):
    nodes.append(helper.make_node('Gemm', [x, w(name + '_w', cin, cout), w(name + '_b', cout)], [name]))
    return name

x = pool(conv('x', 'conv_1', 3, 20, 4), 'pool_1')
x = pool(conv(x, 'conv_2', 20, 40, 3), 'pool_2')
p3 = pool(conv(x, 'conv_3', 40, 60, 3), 'pool_3')
nodes.append(helper.make_node('Flatten', [p3], ['flat_1']))
c4 = conv(p3, 'conv_4', 60, 80, 2)
nodes.append(helper.make_node('Flatten', [c4], ['flat_2']))
f1 = dense('flat_1', 'fc_1', 1200, 160)
f2 = dense('flat_2', 'fc_2', 960, 160)
nodes.append(helper.make_node('Add', [f1, f2], ['add']))
nodes.append(helper.make_node('Relu', ['add'], ['add_r']))
out = dense('add_r', 'output', 160, 1283)
nodes.append(helper.make_node('Softmax', [out], ['y'], axis=1))
graph = helper.make_graph(nodes, 'deepid', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 3, 55, 47])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 1283])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
model.ir_version = 8
onnx.checker.check_model(model)
shape = (3, 55, 47)
if a.model:
    model = onnx.load(a.model)
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
data = rng.random((a.batches * a.batch, *shape), dtype=np.float32)
inp = model.graph.input[0].name
for threads in a.threads:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=['CPUExecutionProvider'])
    for i in range(3):
        sess.run(None, {inp: data[i * a.batch:(i + 1) * a.batch]})  # warm-up
    t, c = time.perf_counter(), time.process_time()
    for i in range(a.batches):
        sess.run(None, {inp: data[i * a.batch:(i + 1) * a.batch]})
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    n = a.batches * a.batch
    print(json.dumps({'onnxruntime': ort.__version__, 'threads': threads, 'batch': a.batch, 'images': n,
                      'seconds': wall, 'cpuSeconds': cpu, 'imagesPerSecond': n / wall, 'imagesPerCpuSecond': n / cpu}))
