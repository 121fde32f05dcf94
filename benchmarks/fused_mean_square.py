"""Value and gradient of mean((2x+1)**2) on N float32 values, compiled.

Compares, in one process, in alternating blocks (benchmarks/timing.py; ratios of medians):
* tracegrad: tg.jit(tg.value_and_grad(f)) — one fused parallel loop (see docs/compiler.md);
* a hand-written fused parallel Numba kernel of the same math (the target: <= 1.3x);
* np.copyto of N float32 values (the memory-bandwidth floor: read x, write the gradient);
* numpy eager, and PyTorch eager / torch.compile / jax.jit when installed.

Run: python -m benchmarks.fused_mean_square [--n 10000000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

import tracegrad as tg

from .timing import time_blocks


# the flags tracegrad's kernels use (reassociation lets the reduction vectorize)
@njit(parallel=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def hand_fused(x: np.ndarray, grad: np.ndarray) -> float:
    n = x.size
    acc = 0.0
    scale = np.float32(4.0 / n)
    for i in prange(n):
        c = np.float32(2.0) * x[i] + np.float32(1.0)
        acc += c * c
        grad[i] = scale * c
    return acc / n


def f(x: Any) -> Any:
    return ((2 * x + 1) ** 2).mean()


def measure(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
        fn()
    samples = time_blocks(fns, repeats)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    n = args.n
    rng = np.random.default_rng(0)
    xn = rng.standard_normal(n).astype(np.float32)
    x = tg.from_numpy(xn)
    dst = np.empty_like(xn)
    grad = np.empty_like(xn)
    vg = tg.jit(tg.value_and_grad(f))

    def numpy_eager() -> Any:
        c = 2 * xn + 1
        return (c * c).mean(), (4.0 / n) * c

    fns: dict[str, Callable[[], Any]] = {
        "tracegrad jit": lambda: vg(x),
        "hand-fused numba": lambda: hand_fused(xn, grad),
        "np.copyto (bandwidth)": lambda: np.copyto(dst, xn),
        "numpy eager": numpy_eager,
    }
    try:
        import torch

        xt = torch.from_numpy(xn)

        def torch_step(x: Any) -> Any:
            x = x.detach().requires_grad_()
            out = ((2 * x + 1) ** 2).mean()
            (g,) = torch.autograd.grad(out, x)
            return out, g

        fns["pytorch eager"] = lambda: torch_step(xt)
        compiled = torch.compile(torch_step)
        fns["torch.compile"] = lambda: compiled(xt)
    except Exception:  # torch missing, or no compiler toolchain for torch.compile
        pass
    try:
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(xn)
        jf = jax.jit(jax.value_and_grad(lambda x: jnp.mean((2 * x + 1) ** 2)))
        fns["jax.jit"] = lambda: jax.block_until_ready(jf(xj))
    except Exception:
        pass

    value, g = vg(x)
    np.testing.assert_allclose(g.numpy(), (4.0 / n) * (2 * xn + 1), rtol=1e-5)
    med = measure(fns, args.repeats)
    base = med["hand-fused numba"]
    print(
        f"value and gradient of mean((2x+1)**2), N = {n:,} float32, median of "
        f"{args.repeats} repeats in alternating blocks (benchmarks/timing.py)"
    )
    for name, ms in med.items():
        print(f"  {name:24s} {ms:9.2f} ms   {ms / base:6.2f}x hand-fused")
    print(f"  tracegrad / np.copyto = {med['tracegrad jit'] / med['np.copyto (bandwidth)']:.2f}x")
    return med


if __name__ == "__main__":
    main()
