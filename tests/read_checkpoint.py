#!/usr/bin/env python3
"""Reads a candletop checkpoint the way a Python user would (h5py + numpy) and checks it
against what the Rust side says it wrote.

    read_checkpoint.py CHECKPOINT.h5 EXPECTED.json

EXPECTED.json: {"tensors": {name: {"shape": [...], "sum": x, "head": [...]}},
                "counters": {name: n}, "epoch": n, "global_step": n, "param_names": [...]}
Exit status 0 and "ok" when everything matches; otherwise the first mismatch on stderr.
"""

import json
import sys
from datetime import datetime

import h5py
import numpy as np


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main(path, expected_path):
    exp = json.load(open(expected_path))
    with h5py.File(path, "r") as f:
        if f.userblock_size != 512:
            fail(f"user block is {f.userblock_size} bytes")
        a = f.attrs
        if a["format"] != "candletop-checkpoint":
            fail(f"format attribute {a['format']!r}")
        if int(a["format_version"]) != 1:
            fail("format_version")
        if int(a["epoch"]) != exp["epoch"] or int(a["global_step"]) != exp["global_step"]:
            fail(f"epoch/step {a['epoch']}/{a['global_step']}")
        datetime.fromisoformat(a["created"])
        model_config = json.loads(a["model_config"])
        train_config = json.loads(a["train_config"])
        classes = json.loads(a["classes"])
        data = json.loads(a["data"])
        if model_config["classes"] != len(classes) or "arch" not in model_config:
            fail("model_config")
        if train_config["optimizer"] not in ("sgd", "adam", "adamw"):
            fail("train_config")
        # One mean and one std per input channel.
        mean, std = data["mean"], data["std"]
        channels = model_config["input"][0]
        if not (len(mean) == len(std) == channels
                and all(0 < m < 1 for m in mean) and all(0 < s < 1 for s in std)):
            fail(f"data normalisation {data}")

        names = set(f["model"].keys())
        want = set(exp["tensors"]) | set(exp["counters"])
        if names != want:
            fail(f"/model names differ: extra {names - want}, missing {want - names}")
        for name, t in exp["tensors"].items():
            ds = f["model"][name]
            if ds.dtype != np.float32:
                fail(f"{name} is {ds.dtype}")
            if list(ds.shape) != t["shape"]:
                fail(f"{name} shape {ds.shape} != {t['shape']}")
            v = ds[()]
            if not np.allclose(v.sum(dtype=np.float64), t["sum"], rtol=1e-6, atol=1e-6):
                fail(f"{name} sum {v.sum()} != {t['sum']}")
            head = v.reshape(-1)[: len(t["head"])]
            if not np.array_equal(head, np.array(t["head"], dtype=np.float32)):
                fail(f"{name} values {head} != {t['head']}")
        for name, n in exp["counters"].items():
            ds = f["model"][name]
            if ds.dtype != np.int64 or ds.shape != () or int(ds[()]) != n:
                fail(f"{name}: {ds.dtype} {ds.shape} {ds[()]}")

        opt = f["optimizer"]
        if opt.attrs["kind"] not in ("sgd", "adam", "adamw"):
            fail("optimizer kind")
        json.loads(opt.attrs["hyper"])
        for name in exp["param_names"]:
            g = opt["state"][name]
            size = int(np.prod(exp["tensors"][name]["shape"]))
            for k in g.keys():
                if g[k].shape != (size,):
                    fail(f"optimizer state {name}/{k} shape {g[k].shape}")
        if f["rng"].shape != (4,) or f["rng"].dtype != np.uint64:
            fail("rng")
        for k in ("epoch", "batch", "loss_sum", "seen"):
            if k not in f["position"].attrs:
                fail(f"position/{k}")
        h = f["history"]
        n = len(h["epoch"])
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            if h[k].shape != (n,):
                fail(f"history/{k}")
        if h["lr"].shape != h["lr_step"].shape or h["lr"].shape[0] == 0:
            fail("history/lr")
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:3])
