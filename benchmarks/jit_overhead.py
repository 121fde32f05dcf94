"""Fixed costs of tg.jit: the per-call overhead of a cached function on a 2x3 input, the first
call of a new graph (trace + generate + compile), the first call in a new process when the
disk cache is warm (trace + load machine code), and a small training step whose learning rate
a scheduler changes on every call against the same step with a constant one (the runtime
scalars and guards of trace/pystate.py: no retrace, no recompile).

Run: python -m benchmarks.jit_overhead
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import tracegrad as tg
import tracegrad.nn.functional as F

from .timing import time_blocks

FIRST_CALL = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import tracegrad as tg
    t1 = time.perf_counter()
    f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()))
    f(tg.ones(1000, 1000))
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1, f.stats["compiles"], f.stats["disk_hits"])
    """
)


def per_call_us(repeats: int = 20000) -> float:
    f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()))
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    f(x)
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        for _ in range(repeats // 20):
            f(x)
        samples.append((time.perf_counter() - t0) / (repeats // 20))
    return statistics.median(samples) * 1e6


def jax_per_call_us(repeats: int = 20000) -> float | None:
    """The same cached call through jax.jit(jax.value_and_grad), measured the same way."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    f = jax.jit(jax.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()))
    x = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=jnp.float32)
    jax.block_until_ready(f(x))
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        for _ in range(repeats // 20):
            jax.block_until_ready(f(x))
        samples.append((time.perf_counter() - t0) / (repeats // 20))
    return statistics.median(samples) * 1e6


def scheduled_step_us(repeats: int = 4000) -> tuple[float, float, int]:
    """Per call (us) of a jitted SGD-momentum step of a Linear(8, 4) on a batch of 16: with a
    constant learning rate, and with a cosine schedule stepped before every call; and the
    traces the scheduled runs added."""

    def make(schedule: bool):
        tg.manual_seed(0)
        model = tg.nn.Linear(8, 4)
        opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        sched = tg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000) if schedule else None

        @tg.jit
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        x, y = tg.randn(16, 8), tg.randint(0, 4, (16,))

        def call():
            step(x, y)
            if sched is not None:
                opt._opt_called = True
                sched.step()

        for _ in range(3):
            call()
        return call, step

    const, f_const = make(False)
    sched, f_sched = make(True)
    traces = f_sched.stats["traces"]
    samples = time_blocks({"constant": const, "scheduled": sched}, repeats, blocks=8, pause=0.05)
    return (
        statistics.median(samples["constant"]) * 1e6,
        statistics.median(samples["scheduled"]) * 1e6,
        f_sched.stats["traces"] - traces,
    )


def first_calls() -> list[tuple[float, float, int, int]]:
    cache = tempfile.mkdtemp(prefix="tracegrad-bench-")
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=cache)
    env.pop("TRACEGRAD_DISABLE_DISK_CACHE", None)
    runs = []
    for _ in range(2):  # cold disk cache, then warm
        out = subprocess.run(
            [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        runs.append((float(out[0]), float(out[1]), int(out[2]), int(out[3])))
    return runs


def main() -> None:
    us = per_call_us()
    print(f"per call, cached value_and_grad on a 2x3 input: {us:.1f} us")
    jax_us = jax_per_call_us()
    if jax_us is not None:
        print(f"  jax.jit, the same: {jax_us:.1f} us; tracegrad / jax.jit = {us / jax_us:.2f}x")
    const, sched, retraces = scheduled_step_us()
    print(
        f"jitted SGD step, Linear(8, 4) b16: lr constant {const:.1f} us, lr changed by a "
        f"scheduler every call {sched:.1f} us ({sched / const:.2f}x; {retraces} retraces; the "
        "scheduler's own step included)"
    )
    (imp0, cold, c0, h0), (imp1, warm, c1, h1) = first_calls()
    print(f"first call, new graph, cold disk cache: {cold:.2f} s ({c0} compiled, {h0} loaded)")
    print(
        f"first call, new process, warm disk cache: {warm:.3f} s ({c1} compiled, {h1} loaded)"
        f"; import tracegrad: {imp1:.2f} s"
    )


if __name__ == "__main__":
    main()
