#!/usr/bin/env python3
"""PyTorch reference for `candletop bench`: the same default model, optimizer, batch sizes and
thread count, timed the same way (fixed batch, warm-up, then N steps).

    python3 -m venv .venv && .venv/bin/pip install torch   # the PyPI wheel works on the CPU
    .venv/bin/python bench/pytorch_reference.py --threads 2 --steps 30

`candletop bench` runs it itself, interleaved with its own rounds, when `python3 -c 'import
torch'` works (or the python in CANDLETOP_TORCH_PYTHON), and prints the ratios.
"""

import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "..", "assets", "fashion-mnist-subset")


def model():
    # candletop's default: c32,c64,f128 relu bn dropout 0.25 (conv bias off under batch norm).
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10),
    )


def images(n, assets=ASSETS):
    raw = gzip.open(os.path.join(assets, "train-images-idx3-ubyte.gz")).read()[16:]
    labels = gzip.open(os.path.join(assets, "train-labels-idx1-ubyte.gz")).read()[8:]
    x = np.frombuffer(raw, dtype=np.uint8)[: n * 784].reshape(n, 1, 28, 28).astype(np.float32) / 255.0
    x = (x - x.mean()) / x.std()
    return torch.from_numpy(x), torch.from_numpy(np.frombuffer(labels, dtype=np.uint8)[:n].astype(np.int64))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, action="append", help="batch size (again for more) [64 and 256]")
    p.add_argument("--assets", default=ASSETS, help="folder with the gzipped IDX training files")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"pytorch {torch.__version__} reference: default model, {a.threads} threads, {a.steps} timed steps")
    print(f"{'what':<28} {'images/s':>12} {'ms/batch':>12}")
    loss_fn = nn.CrossEntropyLoss()
    for bs in a.batch or (64, 256):
        net = model()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
        x, y = images(bs, a.assets)
        net.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()

        for _ in range(5):
            step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        secs = time.perf_counter() - t0
        print(f"{f'train, batch {bs}':<28} {a.steps * bs / secs:>12.0f} {1000 * secs / a.steps:>12.1f}")
        net.eval()
        xv, _ = images(1000, a.assets)
        with torch.no_grad():
            for i in range(0, 1000, bs):
                net(xv[i : i + bs])
            t0 = time.perf_counter()
            for i in range(0, 1000, bs):
                net(xv[i : i + bs])
            secs = time.perf_counter() - t0
        batches = -(-1000 // bs)
        print(f"{f'eval, batch {bs}':<28} {1000 / secs:>12.0f} {1000 * secs / batches:>12.1f}")


if __name__ == "__main__":
    main()
