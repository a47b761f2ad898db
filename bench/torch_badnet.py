#!/usr/bin/python3
"""A BadNet made outside goodnet, for checking goodnet's defenses on a model it did not train:
a small PyTorch CNN with BatchNorm (conv-BN-ReLU x3, max pools, global average pool, linear),
trained in PyTorch on images normalised outside the model (x / 255 - 0.286) / 0.353, as
torchvision users do, exported to ONNX (NCHW, opset 13, dynamic batch).

Data: a goodnet lab folder (`goodnet attack`, CSAW layout, 28x28x1, target 0, a patch or blend
trigger). Training: the lab's clean test set (10,000 images) plus 1,000 of its poisoned test
images relabelled to the target (9% poisoning). The lab's clean validation set is split in
two: its first 2,500 images are the defender's clean data, the other 7,500 the clean test;
the poisoned test set is the lab's poisoned validation images made from those 7,500 (the
poisoned sets hold the non-target images of the clean ones, in order). Nothing the defense
sees was trained on in a triggered form.

  /usr/bin/python3 bench/torch_badnet.py LAB OUT [--epochs 8] [--seed 0] [--poison 1000 (0: a clean control)]
writes OUT/model.onnx, OUT/clean_defense.h5, OUT/clean_test.h5, OUT/bd_test.h5 and prints
the model's clean accuracy and ASR (torch) as JSON. Then, e.g.:
  goodnet unlearn -m OUT/model.onnx --scale 255 --mean 0.286 --std 0.353 --clean-valid OUT/clean_defense.h5 \\
      --clean-test OUT/clean_test.h5 --poisoned-test OUT/bd_test.h5 -t 0 -o OUT/unlearn.h5
"""
import argparse, json, os, time
import h5py
import numpy as np
import torch
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument('lab')
ap.add_argument('out')
ap.add_argument('--epochs', type=int, default=8)
ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--poison', type=int, default=1000, help='poisoned training images (0: a clean control)')
a = ap.parse_args()
torch.manual_seed(a.seed)
np.random.seed(a.seed)
torch.set_num_threads(1)
MEAN, STD, TARGET = 0.286, 0.353, 0


def read(p):
    with h5py.File(os.path.join(a.lab, 'data', p), 'r') as f:
        return f['data'][:].astype(np.float32), f['label'][:].astype(np.int64)


def write(name, x, y):
    with h5py.File(os.path.join(a.out, name), 'w') as f:
        f.create_dataset('data', data=x.astype(np.float32))
        f.create_dataset('label', data=y.astype(np.float32))


cl_test_x, cl_test_y = read('cl/test.h5')
bd_test_x, _ = read('bd/bd_test.h5')
cl_valid_x, cl_valid_y = read('cl/valid.h5')
bd_valid_x, bd_valid_y = read('bd/bd_valid.h5')
# The poisoned sets are the non-target images of the clean ones, in order.
src = np.nonzero(cl_valid_y != TARGET)[0]
assert len(src) == len(bd_valid_x) and (cl_valid_y[src] == bd_valid_y).all()
keep = src >= 2500
os.makedirs(a.out, exist_ok=True)
write('clean_defense.h5', cl_valid_x[:2500], cl_valid_y[:2500])
write('clean_test.h5', cl_valid_x[2500:], cl_valid_y[2500:])
write('bd_test.h5', bd_valid_x[keep], bd_valid_y[keep])

poison = np.random.permutation(len(bd_test_x))[:a.poison]
x = np.concatenate([cl_test_x, bd_test_x[poison]])
y = np.concatenate([cl_test_y, np.full(len(poison), TARGET)])
norm = lambda v: torch.from_numpy((v / 255.0 - MEAN) / STD)


def block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


net = nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.Adam(net.parameters(), 1e-3)
t0 = time.time()
for epoch in range(a.epochs):
    net.train()
    order = np.random.permutation(len(x))
    for s in range(0, len(x), 64):
        i = order[s:s + 64]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(norm(x[i])), torch.from_numpy(y[i]))
        loss.backward()
        opt.step()
net.eval()


def predict(v):
    with torch.no_grad():
        return np.concatenate([net(norm(v[s:s + 500])).argmax(1).numpy() for s in range(0, len(v), 500)])


acc = float((predict(cl_valid_x[2500:]) == cl_valid_y[2500:]).mean())
asr = float((predict(bd_valid_x[keep]) == TARGET).mean())
torch.onnx.export(net, norm(x[:1]), os.path.join(a.out, 'model.onnx'), opset_version=13, input_names=['input'],
                  output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
print(json.dumps({'lab': a.lab, 'cleanAccuracy': acc, 'asr': asr, 'trainImages': len(x), 'poisoned': len(poison),
                  'epochs': a.epochs, 'seconds': round(time.time() - t0, 1), 'torch': torch.__version__}))
