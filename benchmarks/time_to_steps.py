"""Wall time from a cold start to N training steps, jit vs eager, each in a fresh process with
an empty disk cache (what a user waits for the first time; issue #19's measure).

Workloads: the MLP 784-512-512-10 (batch 256, SGD momentum, 500 steps) and the README's
small CNN (batch 64 on 8x8 inputs, Adam, 1000 steps); `--resnet` adds ResNet-18 at batch 1
(64x64, 50 steps: minutes of compiling). For each: eager, the whole step under `tg.jit` (tiered:
calls run eagerly while the worker compiles), the same with `TRACEGRAD_JIT_BLOCK=1` (the first
call compiles), and the compiled-module loop (`tg.jit(model)`, tiered). Each process reports
import time, time to the end of the first two steps, when calls started running compiled,
and time to N steps.

Run: python -m benchmarks.time_to_steps [--steps-scale 1.0] [--resnet]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn
t_import = time.perf_counter() - t0
workload, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
tg.manual_seed(0)
rng = np.random.default_rng(0)
if workload == "mlp":
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    opt = tg.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = tg.tensor(rng.standard_normal((256, 784)).astype(np.float32))
    y = tg.tensor(rng.integers(0, 10, 256))
elif workload == "cnn":
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    opt = tg.optim.Adam(model.parameters(), lr=3e-3)
    x = tg.tensor(rng.random((64, 1, 8, 8)).astype(np.float32))
    y = tg.tensor(rng.integers(0, 10, 64))
else:
    model = tg.models.resnet18()
    opt = tg.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = tg.tensor(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    y = tg.tensor(rng.integers(0, 1000, 1))

def step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss

if mode in ("jit", "jit block"):
    run = tg.jit(step)
elif mode == "jit(model)":
    cm = tg.jit(model)
    def run(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(cm(x), y)
        loss.backward()
        opt.step()
        return loss
else:
    run = step
marks = {}
stats = cm.stats if mode == "jit(model)" else getattr(run, "stats", None)
eager_calls = 0
t1 = time.perf_counter()
for i in range(steps):
    loss = run(x, y)
    if i == 1:
        marks["first_two_steps_s"] = time.perf_counter() - t1
    if stats is not None and stats["calls_while_compiling"] != eager_calls:
        eager_calls = stats["calls_while_compiling"]
        marks["compiled_from_s"] = time.perf_counter() - t0  # (after this call)
loss = float(loss)
total = time.perf_counter() - t0
marks["calls_while_compiling"] = eager_calls
print(json.dumps({"import_s": t_import, "to_n_steps_s": total, "loss": loss, **marks}))
"""

# the processes' tiers: "jit" and "jit(model)" run calls eagerly while the worker compiles
# (the default), "jit block" compiles on the first call
MODES = {"eager": "0", "jit": "0", "jit block": "1", "jit(model)": "0"}


def run_one(workload: str, mode: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tracegrad-cold-") as cache:
        # a worker still compiling at the end must not run on into the next process's time
        env = dict(
            os.environ,
            TRACEGRAD_CACHE_DIR=cache,
            TRACEGRAD_JIT_BLOCK=MODES[mode],
            TRACEGRAD_COMPILE_WORKER_AT_EXIT="kill",
        )
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, workload, mode, str(steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps-scale", type=float, default=1.0)
    p.add_argument("--resnet", action="store_true", help="also ResNet-18 b1 (minutes)")
    args = p.parse_args(argv)
    plan = [("mlp", 500), ("cnn", 1000)] + ([("resnet", 50)] if args.resnet else [])
    results = {}
    for workload, steps in plan:
        steps = max(2, int(steps * args.steps_scale))
        row = {mode: run_one(workload, mode, steps) for mode in MODES}
        results[workload] = row
        eager = row["eager"]["to_n_steps_s"]
        print(f"{workload}: {steps} steps from a cold start (fresh process, empty cache)")
        for mode, r in row.items():
            tier = ""
            if r.get("calls_while_compiling"):
                tier = (
                    f", {r['calls_while_compiling']} calls eager while compiling, compiled "
                    f"from {r['compiled_from_s']:.2f} s"
                )
            print(
                f"  {mode:11s} {r['to_n_steps_s']:7.2f} s  ({r['to_n_steps_s'] / eager:.2f}x eager;"
                f" import {r['import_s']:.2f} s, first two steps {r['first_two_steps_s']:.2f} s"
                f"{tier})"
            )
    return results


if __name__ == "__main__":
    main()
