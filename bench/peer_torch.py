#!/usr/bin/python3
"""PyTorch peer of goodnet's cached pruning sweep on DeepID (bench/prune_speed.ts runs it).

Loads the Keras weights with h5py, runs the head (conv_1..pool_3) once per set, then for
every step 0..60 masks the pooled activations and runs the tail (conv_4, fc_1, fc_2,
output + softmax, argmax) on clean and poisoned sets. Pixels are seeded random 0..255.
Prints one JSON line.

With --cut-file DIR (bench/prune_any.ts): the cut activations goodnet cached and the tail's
Dense layers as raw little-endian arrays described by DIR/meta.json (no h5py needed); per step the channels of --order
pruned so far are masked and the tail (flatten in HWC order, Dense layers, argmax) runs.
"""
import argparse, json, os, time
import numpy as np
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument('--weights')
ap.add_argument('--cut-file')
ap.add_argument('--activations', default='')
ap.add_argument('--order', default='')
ap.add_argument('--n', type=int, default=11547)
ap.add_argument('--steps', type=int, default=60)
ap.add_argument('--batch', type=int, default=2048)
ap.add_argument('--head-batch', type=int, default=256)
ap.add_argument('--threads', type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

def cut_file_sweep():
    meta = json.load(open(os.path.join(a.cut_file, 'meta.json')))
    def arr(name, dtype=np.float32):
        return torch.from_numpy(np.fromfile(os.path.join(a.cut_file, name), dtype=dtype).reshape(meta[name]))
    sets = [(arr(k), arr(k + '_y', np.int32).long()) for k in ('clean', 'poisoned')]
    acts = a.activations.split(',')
    dense = [(arr(f'dense_{i}_kernel').t().contiguous(), arr(f'dense_{i}_bias')) for i in range(len(acts))]
    order = [int(v) for v in a.order.split(',')]
    c = sets[0][0].shape[-1]
    def tail(p):
        x = p.reshape(p.shape[0], -1)
        for (k, b), act in zip(dense, acts):
            x = F.linear(x, k, b)
            if act == 'relu': x = F.relu(x)
            elif act == 'softmax': x = torch.softmax(x, 1)
            elif act != 'linear': raise SystemExit(f'activation {act} not supported')
        return x.argmax(1)
    acc = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        c0 = time.process_time()
        for k in range(len(order) + 1):
            mask = torch.ones(c); mask[order[:k]] = 0
            r = []
            for p, y in sets:
                lab = torch.cat([tail(p[i:i + a.batch] * mask) for i in range(0, p.shape[0], a.batch)])
                r.append((lab == y).float().mean().item())
            acc.append(r)
        t_sweep = time.perf_counter() - t0
        c_sweep = time.process_time() - c0
    # OS threads of the process after the sweep (OpenBLAS's pool included), to show what "1 thread" was.
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'os_threads': len(os.listdir('/proc/self/task')), 'sweep_s': t_sweep, 'sweep_cpu_s': c_sweep, 'steps': len(order), 'n': sets[0][0].shape[0], 'acc': acc}))

if a.cut_file:
    cut_file_sweep()
    raise SystemExit(0)

# Quick matmul peak (float32, 1024^3), to show whether a BLAS is in use.
m = torch.randn(1024, 1024)
m @ m
t = time.perf_counter(); reps = 20
for _ in range(reps): m @ m
gflops = 2 * 1024 ** 3 * reps / (time.perf_counter() - t) / 1e9

import h5py
f = h5py.File(a.weights, 'r')
def W(name):
    g = f[name][name]
    return torch.from_numpy(np.array(g['kernel:0'])), torch.from_numpy(np.array(g['bias:0']))
def convw(name):
    k, b = W(name)
    return k.permute(3, 2, 0, 1).contiguous(), b  # (kh,kw,in,out) -> (out,in,kh,kw)
c1, c2, c3, c4 = (convw(n) for n in ('conv_1', 'conv_2', 'conv_3', 'conv_4'))
fc1, fc2, out = W('fc_1'), W('fc_2'), W('output')
fc1 = (fc1[0].t().contiguous(), fc1[1]); fc2 = (fc2[0].t().contiguous(), fc2[1]); out = (out[0].t().contiguous(), out[1])

def head(x):  # x: N,3,55,47
    x = F.max_pool2d(F.relu(F.conv2d(x, *c1)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, *c2)), 2)
    return F.max_pool2d(F.relu(F.conv2d(x, *c3)), 2)  # N,60,5,4

def tail(p):  # p: N,60,5,4 (masked)
    y4 = F.relu(F.conv2d(p, *c4))  # N,80,4,3
    f1 = F.linear(p.permute(0, 2, 3, 1).reshape(p.shape[0], -1), *fc1)  # Keras flattens HWC
    f2 = F.linear(y4.permute(0, 2, 3, 1).reshape(p.shape[0], -1), *fc2)
    return torch.softmax(F.linear(F.relu(f1 + f2), *out), 1).argmax(1)

rng = np.random.default_rng(1)
sets = []
with torch.inference_mode():
    t0 = time.perf_counter()
    for _ in range(2):
        x = torch.from_numpy(rng.integers(0, 256, size=(a.n, 3, 55, 47)).astype(np.float32))
        y = torch.from_numpy(rng.integers(0, 1283, size=a.n))
        sets.append((torch.cat([head(x[i:i + a.head_batch]) for i in range(0, a.n, a.head_batch)]), y))
    t_head = time.perf_counter() - t0
    means = sets[0][0].mean((0, 2, 3))
    order = sorted(range(60), key=lambda i: (means[i].item(), i))
    t0 = time.perf_counter()
    acc = []
    for k in range(a.steps + 1):
        mask = torch.ones(60); mask[order[:k]] = 0
        mask = mask.view(1, 60, 1, 1)
        r = []
        for p, y in sets:
            lab = torch.cat([tail(p[i:i + a.batch] * mask) for i in range(0, a.n, a.batch)])
            r.append((lab == y).float().mean().item())
        acc.append(r)
    t_sweep = time.perf_counter() - t0
print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'blas': next((l.split()[-1] for l in open('/proc/self/maps') if 'libopenblas' in l), next((l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l), 'none')),
                  'matmul_gflops': gflops, 'head_s': t_head, 'sweep_s': t_sweep, 'steps': a.steps, 'n': a.n, 'acc0': acc[0]}))
