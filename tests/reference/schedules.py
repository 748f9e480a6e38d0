"""Learning rates of PyTorch's own schedulers, step by step, for tests/schedules.rs.

    python tests/reference/schedules.py > tests/reference/schedules.json

Each case names a candletop --schedule spec and the scheduler that it follows. The LR of step k
is read from the optimizer just before its k-th step; per-epoch schedulers are stepped at the
end of each epoch, the others after every step, as they are normally used.
"""
import json
import math
import sys

import torch

torch.set_default_dtype(torch.float64)
S = torch.optim.lr_scheduler


def optimizer(kind, lr):
    p = [torch.nn.Parameter(torch.zeros(1))]
    if kind == "sgd":
        return torch.optim.SGD(p, lr=lr, momentum=0.9)
    return torch.optim.Adam(p, lr=lr)


def run(opt, epochs, spe, step_sched=None, epoch_sched=None, metrics=None, step_with_epoch=None):
    lrs, moms = [], []
    for e in range(epochs):
        for i in range(spe):
            g = opt.param_groups[0]
            lrs.append(g["lr"])
            moms.append(g["betas"][0] if "betas" in g else g["momentum"])
            opt.step()
            if step_sched is not None:
                step_sched.step()
            if step_with_epoch is not None:
                step_with_epoch.step(e + (i + 1) / spe)
        if epoch_sched is not None:
            if metrics is not None:
                epoch_sched.step(metrics[e])
            else:
                epoch_sched.step()
    return lrs, moms


def case(spec, base_lr, epochs, spe, make, opt_kind="sgd", metrics=None, momentum=False):
    opt = optimizer(opt_kind, base_lr)
    kind, sched = make(opt)
    kw = {kind: sched}
    lrs, moms = run(opt, epochs, spe, metrics=metrics, **kw)
    return {
        "spec": spec,
        "base_lr": base_lr,
        "epochs": epochs,
        "steps_per_epoch": spe,
        "optimizer": opt_kind,
        "metrics": metrics,
        "lr": lrs,
        "momentum": moms if momentum else None,
    }


def plateau_losses(n):
    # Falls, then wobbles on a plateau, falls again, and plateaus.
    out = []
    for e in range(n):
        if e < 8:
            out.append(1.0 / (1 + e))
        elif e < 25:
            out.append(0.12 + 0.003 * math.sin(e))
        else:
            out.append(0.11 - 0.001 * (e - 25) + 0.002 * math.cos(3 * e))
    return out


def plateau_accs(n):
    return [min(0.95, 0.5 + 0.05 * e) if e < 6 else 0.8 + 0.004 * math.sin(2 * e) for e in range(n)]


cases = [
    case("constant", 1e-3, 5, 40, lambda o: ("epoch_sched", S.LambdaLR(o, lambda e: 1.0))),
    case("step:7:0.1", 0.1, 30, 20, lambda o: ("epoch_sched", S.StepLR(o, 7, 0.1))),
    case("step:every=3,gamma=0.5", 0.02, 20, 25, lambda o: ("epoch_sched", S.StepLR(o, 3, 0.5))),
    case("multistep:3,6,8:0.5", 0.05, 12, 25, lambda o: ("epoch_sched", S.MultiStepLR(o, [3, 6, 8], 0.5))),
    case("exp:0.9", 0.01, 20, 20, lambda o: ("epoch_sched", S.ExponentialLR(o, 0.9))),
    case("cosine:min=1e-5", 3e-3, 20, 25, lambda o: ("step_sched", S.CosineAnnealingLR(o, 500, 1e-5))),
    case("cosine", 0.1, 10, 40, lambda o: ("step_sched", S.CosineAnnealingLR(o, 400))),
    case(
        "cosine:min=1e-4,restart=2,mult=2",
        0.01,
        14,
        30,
        lambda o: ("step_with_epoch", S.CosineAnnealingWarmRestarts(o, 2, 2, 1e-4)),
    ),
    case(
        "cosine:restart=3",
        0.01,
        10,
        30,
        lambda o: ("step_with_epoch", S.CosineAnnealingWarmRestarts(o, 3, 1, 0.0)),
    ),
    case(
        "onecycle:max=0.01",
        1e-3,
        20,
        25,
        lambda o: ("step_sched", S.OneCycleLR(o, 0.01, total_steps=500)),
        momentum=True,
    ),
    case(
        "onecycle:max=0.05,pct=0.25,anneal=linear,three_phase,momentum=0.8-0.9",
        1e-3,
        12,
        35,
        lambda o: (
            "step_sched",
            S.OneCycleLR(
                o, 0.05, total_steps=420, pct_start=0.25, anneal_strategy="linear",
                three_phase=True, base_momentum=0.8, max_momentum=0.9,
            ),
        ),
        opt_kind="adam",
        momentum=True,
    ),
    case(
        "warmup=100+cosine:min=1e-5",
        2e-3,
        20,
        25,
        lambda o: (
            "step_sched",
            S.SequentialLR(
                o, [S.LinearLR(o, 0.01, 1.0, 100), S.CosineAnnealingLR(o, 400, 1e-5)], [100]
            ),
        ),
    ),
    case(
        "warmup=60:0.25+constant",
        1e-2,
        6,
        20,
        lambda o: (
            "step_sched",
            S.SequentialLR(o, [S.LinearLR(o, 0.25, 1.0, 60), S.LambdaLR(o, lambda e: 1.0)], [60]),
        ),
    ),
    case(
        "plateau:patience=3,factor=0.5",
        1e-2,
        40,
        10,
        lambda o: ("epoch_sched", S.ReduceLROnPlateau(o, "min", 0.5, 3)),
        metrics=plateau_losses(40),
    ),
    case(
        "plateau:monitor=val_acc,factor=0.3,patience=1,threshold=0.01,threshold_mode=abs,cooldown=2,min_lr=1e-4",
        1e-2,
        30,
        10,
        lambda o: (
            "epoch_sched",
            S.ReduceLROnPlateau(o, "max", 0.3, 1, 0.01, "abs", 2, 1e-4),
        ),
        metrics=plateau_accs(30),
    ),
]

json.dump({"torch": torch.__version__, "cases": cases}, sys.stdout)
print()
