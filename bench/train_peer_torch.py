#!/usr/bin/python3
"""PyTorch peer of goodnet's BadNet-lab training step: the lab's architectures for 28x28x1,
10 classes (--arch deepid: the DeepID topology zero-padded to 32x32, as goodnet's `pad` layer
does; vgg: src/models/vgg.ts, 2 blocks of 2 conv-BN-ReLU, 16 and 32 channels, fc 128;
resnet: src/models/resnet.ts, stem 16 + pool, basic blocks 16/32/64, GAP), Adam, batch 64,
random data. Prints one JSON line with images/s of wall time and of process CPU time
(bench/train_compare.ts and bench/goals.ts run it)."""
import argparse, json, os, time
import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument('--batches', type=int, default=60)
ap.add_argument('--batch', type=int, default=64)
ap.add_argument('--threads', type=int, default=os.cpu_count())
ap.add_argument('--arch', choices=['deepid', 'vgg', 'resnet'], default='deepid')
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

class DeepID(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(1, 20, 4), nn.Conv2d(20, 40, 3), nn.Conv2d(40, 60, 3)
        self.c4 = nn.Conv2d(60, 80, 2)
        self.fc1, self.fc2, self.out = nn.Linear(240, 160), nn.Linear(80, 160), nn.Linear(160, 10)
    def forward(self, x):
        x = F.pad(x, (2, 2, 2, 2))
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        p3 = F.max_pool2d(F.relu(self.c3(x)), 2)
        a = self.fc1(p3.flatten(1))
        b = self.fc2(F.relu(self.c4(p3)).flatten(1))
        return self.out(F.relu(a + b))

def cbr(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout, momentum=0.1), nn.ReLU()]

class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(*cbr(1, 16), *cbr(16, 16), nn.MaxPool2d(2), *cbr(16, 32), *cbr(32, 32), nn.MaxPool2d(2))
        self.fc, self.out = nn.Linear(7 * 7 * 32, 128), nn.Linear(128, 10)
    def forward(self, x):
        return self.out(F.relu(self.fc(self.f(x).flatten(1))))

class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        s = 1 if cin == cout else 2
        self.a = nn.Sequential(*cbr(cin, cout, s), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.p = None if s == 1 else nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        return F.relu(self.a(x) + (x if self.p is None else self.p(x)))

class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(1, 16), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(Block(16, 16), Block(16, 32), Block(32, 64))
        self.out = nn.Linear(64, 10)
    def forward(self, x):
        return self.out(self.blocks(self.stem(x)).mean((2, 3)))

net = {'deepid': DeepID, 'vgg': VGG, 'resnet': ResNet}[a.arch]()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
n = a.batches * a.batch
x = torch.randint(0, 256, (n, 1, 28, 28)).float() / 255
y = torch.randint(0, 10, (n,))
def step(i):
    xb, yb = x[i * a.batch:(i + 1) * a.batch], y[i * a.batch:(i + 1) * a.batch]
    opt.zero_grad()
    loss = F.cross_entropy(net(xb), yb)
    loss.backward()
    opt.step()
for i in range(5): step(i)  # warm-up
t, c = time.perf_counter(), time.process_time()
for i in range(a.batches): step(i)
s, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({'torch': torch.__version__, 'arch': a.arch, 'threads': a.threads, 'batch': a.batch, 'images': n, 'seconds': s, 'imagesPerSecond': n / s,
                  'cpuSeconds': cpu, 'imagesPerCpuSecond': n / cpu}))
