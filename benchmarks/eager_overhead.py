"""Eager overhead: forward + backward of SEEDS.md section 3 on the 2x3 input.

    x = tensor([[1, 2, 3], [4, 5, 6]], requires_grad=True)
    out = ((2 * x + 1) ** 2).mean();  out.backward()

Everything here is per-op Python overhead (the arrays have 6 elements), which is what a user of
eager mode pays on small models. tracegrad and PyTorch (when installed) run in one process, in
alternating blocks (benchmarks/timing.py), so machine drifts hit both alike; the figure that
counts is the ratio of medians. Run: python -m benchmarks.eager_overhead [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tracegrad as tg

from .timing import time_blocks

DATA = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def step_tracegrad(x: Any) -> None:
    x.grad = None
    out = ((2 * x + 1) ** 2).mean()
    out.backward()


def step_numpy_by_hand(x: np.ndarray) -> np.ndarray:
    # the same forward and backward written out in numpy: the floor for any eager library
    y = 2 * x + 1
    out = (y**2).mean()
    g = np.full_like(x, 1.0 / x.size) * 2 * y * 2
    return out, g


def measure(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm up
        for _ in range(50):
            fn()
    samples = time_blocks(fns, repeats, clock=time.perf_counter_ns)
    return {name: statistics.median(s) / 1000.0 for name, s in samples.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5000)
    args = parser.parse_args(argv)

    x = tg.tensor(DATA, requires_grad=True)
    xn = np.array(DATA, dtype=np.float32)
    fns: dict[str, Callable[[], Any]] = {
        "tracegrad": lambda: step_tracegrad(x),
        "numpy (by hand)": lambda: step_numpy_by_hand(xn),
    }
    try:
        import torch

        torch.set_num_threads(1)
        xt = torch.tensor(DATA, requires_grad=True)

        def step_torch() -> None:
            xt.grad = None
            out = ((2 * xt + 1) ** 2).mean()
            out.backward()

        fns["pytorch"] = step_torch
    except ImportError:
        pass

    med = measure(fns, args.repeats)
    np.testing.assert_allclose(x.grad.numpy(), step_numpy_by_hand(xn)[1], rtol=1e-6)
    print(
        f"eager overhead: SEEDS section 3 forward+backward, 2x3 input, median of "
        f"{args.repeats} repeats in alternating blocks (benchmarks/timing.py)"
    )
    for name, us in med.items():
        print(f"  {name:18s} {us:8.1f} us")
    if "pytorch" in med:
        print(f"  tracegrad / pytorch = {med['tracegrad'] / med['pytorch']:.2f}x")
    print(f"  tracegrad / numpy by hand = {med['tracegrad'] / med['numpy (by hand)']:.1f}x")
    return med


if __name__ == "__main__":
    main()
