"""Softmax cross-entropy, value and gradient, on B x C float32 logits (default 4096 x 1000).

tracegrad: tg.jit(tg.value_and_grad(ce)) with ce = -(log_softmax(x) * onehot).sum(1).mean()
(three fused passes over the logits, see tests/fuse). PyTorch eager: F.cross_entropy on integer
labels + autograd. numpy: the same math written by hand. Interleaved, ratios of medians.

Run: python -m benchmarks.cross_entropy [--batch 4096] [--classes 1000]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

import tracegrad as tg

from .fused_mean_square import measure


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    b, c = args.batch, args.classes
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((b, c)).astype(np.float32)
    labels = rng.integers(0, c, b)
    onehot_n = np.zeros((b, c), np.float32)
    onehot_n[np.arange(b), labels] = 1
    x, onehot = tg.from_numpy(xn), tg.from_numpy(onehot_n)

    def ce(x: Any) -> Any:
        return -(x.log_softmax(1) * onehot).sum(1).mean()

    vg = tg.jit(tg.value_and_grad(ce))

    def numpy_ce() -> Any:
        m = xn.max(1, keepdims=True)
        e = np.exp(xn - m)
        s = e.sum(1, keepdims=True)
        logp = xn - m - np.log(s)
        value = -(logp * onehot_n).sum(1).mean()
        return value, (e / s - onehot_n) / b

    fns: dict[str, Callable[[], Any]] = {"tracegrad jit": lambda: vg(x), "numpy": numpy_ce}
    try:
        import torch
        import torch.nn.functional as F

        xt, lt = torch.from_numpy(xn), torch.from_numpy(labels)

        def torch_ce() -> Any:
            xg = xt.detach().requires_grad_()
            loss = F.cross_entropy(xg, lt)
            (g,) = torch.autograd.grad(loss, xg)
            return loss, g

        fns["pytorch eager"] = torch_ce
    except ImportError:
        pass
    value, grad = vg(x)
    ref_value, ref_grad = numpy_ce()
    np.testing.assert_allclose(value.item(), ref_value, rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-4, atol=1e-8)
    med = measure(fns, args.repeats)
    print(
        f"softmax cross-entropy value and gradient, {b} x {c} float32, median of "
        f"{args.repeats} repeats in alternating blocks (benchmarks/timing.py)"
    )
    for name, ms in med.items():
        print(f"  {name:16s} {ms:9.2f} ms")
    if "pytorch eager" in med:
        print(f"  tracegrad / pytorch eager = {med['tracegrad jit'] / med['pytorch eager']:.2f}x")
    return med


if __name__ == "__main__":
    main()
