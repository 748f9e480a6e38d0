#!/usr/bin/env python3
"""Loads the weights `candletop export --safetensors` wrote the way a Python user would, runs
the model on the test images, and checks its predictions against `candletop eval
--predictions`.

    predict_safetensors.py WEIGHTS.safetensors TEST_IMAGES.idx.gz PREDICTIONS.csv

Always with safetensors.numpy and a forward pass in numpy written from the model description in
the file's metadata; also with PyTorch (safetensors.torch.load_file, load_state_dict(strict=True)
into torch.nn layers) when torch imports. Prints "ok numpy" or "ok numpy torch"; a mismatch is
a line on stderr and exit status 1.
"""

import csv
import gzip
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

EPS = 1e-5
LEAKY = 0.01


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def plan(cfg):
    """The layers as candletop numbers them: (section, index, kind, settings)."""
    feats, cls = [], []
    for conv in cfg["arch"]["convs"]:
        feats.append(("conv", conv))
        if cfg["batch_norm"]:
            feats.append(("bn", None))
        feats.append(("act", None))
        if conv["pool"] != "none":
            feats.append(("pool", conv["pool"]))
    if cfg["dropout"] > 0:
        feats.append(("dropout", None))
    for units in cfg["arch"]["hidden"]:
        cls.append(("linear", units))
        cls.append(("act", None))
        if cfg["dropout"] > 0:
            cls.append(("dropout", None))
    cls.append(("linear", cfg["classes"]))
    return feats, cls


def act(x, name):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x > 0, x, LEAKY * x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    fail(f"activation {name}")


def conv2d(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    out = np.einsum("nckluv,ockl->nouv", cols, w.astype(np.float64))
    return out if b is None else out + b[None, :, None, None]


def pool(x, kind):
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    return x.max(axis=(3, 5)) if kind == "max" else x.mean(axis=(3, 5))


def forward_numpy(sd, cfg, x):
    feats, cls = plan(cfg)
    for i, (kind, s) in enumerate(feats):
        p = f"features.{i}."
        if kind == "conv":
            x = conv2d(x, sd[p + "weight"], sd.get(p + "bias"), s["stride"], s["padding"])
        elif kind == "bn":
            scale = sd[p + "weight"] / np.sqrt(sd[p + "running_var"].astype(np.float64) + EPS)
            x = (x - sd[p + "running_mean"][None, :, None, None]) * scale[None, :, None, None]
            x = x + sd[p + "bias"][None, :, None, None]
        elif kind == "act":
            x = act(x, cfg["activation"])
        elif kind == "pool":
            x = pool(x, s)
    x = x.reshape(x.shape[0], -1)
    for i, (kind, s) in enumerate(cls):
        p = f"classifier.{i}."
        if kind == "linear":
            x = x @ sd[p + "weight"].astype(np.float64).T + sd[p + "bias"]
        elif kind == "act":
            x = act(x, cfg["activation"])
    return x


def forward_torch(path, cfg, x):
    import torch
    import torch.nn as nn
    from safetensors.torch import load_file as load_torch

    acts = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(LEAKY), "elu": nn.ELU,
            "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    feats, cls = plan(cfg)
    channels = cfg["input"][0]
    f_layers = []
    for kind, s in feats:
        if kind == "conv":
            f_layers.append(nn.Conv2d(channels, s["out_channels"], s["kernel"], s["stride"],
                                      s["padding"], bias=not cfg["batch_norm"]))
            channels = s["out_channels"]
        elif kind == "bn":
            f_layers.append(nn.BatchNorm2d(channels, eps=EPS))
        elif kind == "act":
            f_layers.append(acts[cfg["activation"]]())
        elif kind == "pool":
            f_layers.append(nn.MaxPool2d(2) if s == "max" else nn.AvgPool2d(2))
        else:
            f_layers.append(nn.Dropout(cfg["dropout"]))
    model = nn.Module()
    model.features = nn.Sequential(*f_layers)
    with torch.no_grad():
        flat = model.features(torch.zeros(1, *cfg["input"])).numel()
    c_layers = []
    for kind, s in cls:
        if kind == "linear":
            c_layers.append(nn.Linear(flat, s))
            flat = s
        elif kind == "act":
            c_layers.append(acts[cfg["activation"]]())
        else:
            c_layers.append(nn.Dropout(cfg["dropout"]))
    model.classifier = nn.Sequential(*c_layers)
    model.load_state_dict(load_torch(path), strict=True)
    model.eval()
    with torch.no_grad():
        h = model.features(torch.from_numpy(x.astype(np.float32)))
        return model.classifier(h.flatten(1)).double().numpy()


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check(name, logits, labels, want_pred, want_p):
    p = softmax(logits)
    worst = np.abs(p - want_p).max()
    # The CSV keeps 6 decimals; float32 against float64 arithmetic adds a little.
    if worst > 2e-5:
        fail(f"{name}: probabilities differ by up to {worst:.2e}")
    pred = p.argmax(axis=1)
    top2 = np.sort(p, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4
    if (pred[clear] != want_pred[clear]).any():
        fail(f"{name}: {int((pred[clear] != want_pred[clear]).sum())} predictions differ")


def main(path, images_path, predictions_path):
    with safe_open(path, "np") as f:
        meta = f.metadata()
    if meta.get("format") != "pt":
        fail(f"metadata format {meta.get('format')!r}")
    cfg = json.loads(meta["candletop_model"])
    norm = json.loads(meta["normalize"])
    sd = load_file(path)
    for k, v in sd.items():
        want = np.int64 if k.endswith("num_batches_tracked") else np.float32
        if v.dtype != want:
            fail(f"{k} is {v.dtype}")
    raw = gzip.open(images_path).read()
    n, h, w = (int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
    imgs = np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, h, w).astype(np.float64) / 255
    mean = np.array(norm["mean"])[None, :, None, None]
    std = np.array(norm["std"])[None, :, None, None]
    x = (imgs - mean) / std
    rows = list(csv.DictReader(open(predictions_path)))
    if len(rows) != n:
        fail(f"{len(rows)} predictions for {n} images")
    labels = np.array([int(r["label"]) for r in rows])
    want_pred = np.array([int(r["predicted"]) for r in rows])
    want_p = np.array([[float(r[f"p{c}"]) for c in range(cfg["classes"])] for r in rows])
    check("numpy", forward_numpy(sd, cfg, x), labels, want_pred, want_p)
    said = ["numpy"]
    try:
        import torch  # noqa: F401
    except ImportError:
        torch = None
    if torch is not None:
        check("torch", forward_torch(path, cfg, x), labels, want_pred, want_p)
        said.append("torch")
    print("ok " + " ".join(said))


if __name__ == "__main__":
    main(*sys.argv[1:4])
