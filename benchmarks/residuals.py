"""Residual memory of compiled-module training (`tg.jit(model)`): the bytes the forward
program keeps for the backward program, with and without recomputing cheap values in the
backward (tape/split.py), for ResNet-18 (batch 16, 64x64) and the GPT of benchmarks/gpt.py.

Only traces and splits (the reference interpreter stands in for the compiler): a few seconds.

Run: python -m benchmarks.residuals
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import tracegrad as tg
from tracegrad.tape.split import split_joint

from . import gpt


def _split_of(cm: Any) -> Any:
    (entry,) = [e for entries in cm._jit._cache.values() for e in entries]
    return entry


def measure(name: str, model: Any, args: tuple) -> dict:
    cm = tg.jit(model)
    out = cm(*args)
    assert out.grad_fn.name() == "CompiledFunctionBackward"
    program = _split_of(cm).program
    joint = program.joint_tape
    kept = split_joint(joint, program.n_args, program.n_outputs, recompute=False)
    chosen = program.split
    row = {
        "all kept MB": kept.residual_bytes / 2**20,
        "chosen MB": chosen.residual_bytes / 2**20,
        "recomputed ops": len(chosen.recomputed),
        "residuals": len(chosen.residuals),
    }
    print(
        f"{name:28s} keep everything {row['all kept MB']:8.2f} MB   chosen "
        f"{row['chosen MB']:8.2f} MB   ({row['recomputed ops']} ops recomputed, "
        f"{row['residuals']} residuals)"
    )
    return row


def main() -> dict:
    os.environ["TRACEGRAD_EXECUTOR"] = "interpreter"
    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    out = {}
    resnet = tg.models.resnet18()
    x = tg.tensor(rng.standard_normal((16, 3, 64, 64)).astype(np.float32))
    out["resnet18 b16"] = measure("ResNet-18, 16x3x64x64", resnet, (x,))
    xg, yg = gpt.data()
    out["gpt"] = measure(
        "GPT (benchmarks/gpt.py)", gpt.tracegrad_model(), (tg.tensor(xg), tg.tensor(yg))
    )
    return out


if __name__ == "__main__":
    main()
