"""conv2d lowering: im2col + one BLAS GEMM (tracegrad's) vs direct loops in Numba vs PyTorch.

    python -m benchmarks.conv2d [--repeats 20]

Forward and both gradients of a 3x3 convolution at ResNet-18 shapes (batch 16, 64x64 input
images: layer1 to layer4). Repeats in alternating blocks in one process (benchmarks/timing.py),
median times; the direct-loop
kernel is the straightforward parallel Numba version (output channels in prange). The results
decided the lowering recorded in docs/nn.md.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np

import tracegrad as tg
from tracegrad import ops

from .timing import time_blocks

try:
    import torch
except ImportError:
    torch = None


@numba.njit(parallel=True, fastmath=True, cache=True)
def direct_conv(x, w, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), dtype=x.dtype)
    for oc in numba.prange(o):
        for b in range(n):
            for ci in range(c):
                for i in range(kh):
                    for j in range(kw):
                        wv = w[oc, ci, i, j]
                        for r in range(oh):
                            hr = r * stride + i - pad
                            if hr < 0 or hr >= h:
                                continue
                            for q in range(ow):
                                wq = q * stride + j - pad
                                if 0 <= wq < wd:
                                    out[b, oc, r, q] += wv * x[b, ci, hr, wq]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(
        f"{'shape (N,C,H,W) -> O':28} {'im2col+BLAS fwd':>16} {'direct fwd':>11} "
        f"{'torch fwd':>10} {'im2col fwd+bwd':>15} {'torch fwd+bwd':>14}"
    )
    for n, c, hw, o, stride in [
        (16, 64, 16, 64, 1),
        (16, 64, 16, 128, 2),
        (16, 128, 8, 128, 1),
        (16, 256, 4, 256, 1),
        (16, 512, 2, 512, 1),
    ]:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        params = dict(stride=(stride, stride), padding=(1, 1), dilation=(1, 1), groups=1)
        ref = ops.conv2d(tg.tensor(x), tg.tensor(w), **params).numpy()
        np.testing.assert_allclose(direct_conv(x, w, stride, 1), ref, rtol=1e-3, atol=1e-3)
        tx = tg.tensor(x, requires_grad=True)
        tw = tg.tensor(w, requires_grad=True)

        def im2col():
            return ops.conv2d(tg.tensor(x), tg.tensor(w), **params)

        def im2col_both():
            tx.grad = tw.grad = None
            ops.conv2d(tx, tw, **params).sum().backward()

        systems = {
            "im2col": im2col,
            "direct": lambda: direct_conv(x, w, stride, 1),
            "im2col_both": im2col_both,
        }
        if torch is not None:
            px = torch.tensor(x, requires_grad=True)
            pw = torch.tensor(w, requires_grad=True)
            systems["torch"] = lambda: torch.nn.functional.conv2d(
                px.detach(), pw.detach(), stride=stride, padding=1
            )

            def torch_both():
                px.grad = pw.grad = None
                torch.nn.functional.conv2d(px, pw, stride=stride, padding=1).sum().backward()

            systems["torch_both"] = torch_both
        for f in systems.values():
            f()
        times = time_blocks(systems, args.repeats)
        med = {k: np.median(v) * 1e3 for k, v in times.items()}
        row = f"({n},{c},{hw},{hw}) -> {o}, s{stride}"
        print(
            f"{row:28} {med['im2col']:13.2f} ms {med['direct']:8.2f} ms "
            f"{med.get('torch', float('nan')):7.2f} ms {med['im2col_both']:12.2f} ms "
            f"{med.get('torch_both', float('nan')):11.2f} ms"
        )


if __name__ == "__main__":
    main()
