#!/usr/bin/python3
"""PyTorch peer of goodnet's BadNet-lab training step: the DeepID topology sized to 28x28x1
(zero-padded to 32x32, as goodnet's `pad` layer does), 10 classes, Adam, batch 64, random
data. Prints one JSON line with images/s of wall time and of process CPU time
(bench/train_compare.ts and bench/goals.ts run it)."""
import argparse, json, os, time
import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument('--batches', type=int, default=60)
ap.add_argument('--batch', type=int, default=64)
ap.add_argument('--threads', type=int, default=os.cpu_count())
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

net = DeepID()
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
print(json.dumps({'torch': torch.__version__, 'threads': a.threads, 'batch': a.batch, 'images': n, 'seconds': s, 'imagesPerSecond': n / s,
                  'cpuSeconds': cpu, 'imagesPerCpuSecond': n / cpu}))
