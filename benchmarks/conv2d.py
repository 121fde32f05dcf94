"""conv2d lowerings per ResNet-18 layer: Winograd F(2x2, 3x3) vs im2col + one BLAS GEMM vs
PyTorch (oneDNN), for the forward, the input gradient and the weight gradient.

    python -m benchmarks.conv2d [--batch 16] [--repeats 15]

3x3 convolutions at ResNet-18's shapes for 64x64 input images (layer1 to layer4; the stride-2
first convolutions of layer2-4 are im2col only). Each row's systems are timed in alternating
blocks in one process (benchmarks/timing.py), medians. The results decided `conv2d`'s lowering
rule (ops/nn.py `use_winograd`), recorded in docs/nn.md. The weight gradient is im2col for
every shape (a Winograd weight gradient was not built: see docs/nn.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from tracegrad.ops import nn as conv_ops
from tracegrad.ops import winograd

from .timing import time_blocks

try:
    import torch
except ImportError:
    torch = None

LAYERS = [  # (C in, H=W in, C out, stride)
    (64, 16, 64, 1),
    (64, 16, 128, 2),
    (128, 8, 128, 1),
    (256, 4, 256, 1),
    (512, 2, 512, 1),
]


def im2col_input_grad(g: np.ndarray, w: np.ndarray, x_shape: tuple, stride: int) -> np.ndarray:
    o, c, kh, kw = w.shape
    n, _, oh, ow = g.shape
    cols = w.reshape(o, c * kh * kw).T @ g.transpose(1, 0, 2, 3).reshape(o, n * oh * ow)
    return conv_ops._fold_forward(
        cols.reshape(c, kh, kw, n, oh, ow),
        size=tuple(x_shape[2:]),
        kernel=(kh, kw),
        stride=(stride, stride),
        padding=(1, 1),
        dilation=(1, 1),
    )


def winograd_input_grad(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return winograd.conv3x3(g, flipped, (1, 1))


def im2col_weight_grad(g: np.ndarray, x: np.ndarray, stride: int) -> np.ndarray:
    o = g.shape[1]
    cols = conv_ops._unfold_forward(
        x, kernel=(3, 3), stride=(stride, stride), padding=(1, 1), dilation=(1, 1)
    )
    k = cols.shape[0] * 9
    return (g.transpose(1, 0, 2, 3).reshape(o, -1) @ cols.reshape(k, -1).T).reshape(o, -1, 3, 3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n = args.batch
    print(
        f"batch {n}, float32, ms (median); winograd = F(2x2,3x3), im2col = im2col + one GEMM\n"
        f"{'layer (C,HxW)->O, stride':26} {'forward':>26} {'input gradient':>26} "
        f"{'weight gradient':>17}\n{'':26} {'winograd im2col torch':>26} "
        f"{'winograd im2col torch':>26} {'im2col torch':>17}"
    )
    table = {}
    for c, hw, o, stride in LAYERS:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((o, c, 3, 3)) * 0.05).astype(np.float32)
        oh = (hw + 2 - 3) // stride + 1
        g = rng.standard_normal((n, o, oh, oh)).astype(np.float32)
        params = dict(stride=(stride, stride), padding=(1, 1), dilation=(1, 1), groups=1)
        systems = {
            "fwd im2col": lambda: conv_ops.im2col_conv(x, w, **params),
            "dx im2col": lambda: im2col_input_grad(g, w, x.shape, stride),
            "dw im2col": lambda: im2col_weight_grad(g, x, stride),
        }
        if stride == 1:
            ref = conv_ops.im2col_conv(x, w, **params)
            np.testing.assert_allclose(winograd.conv3x3(x, w, (1, 1)), ref, rtol=1e-4, atol=1e-4)
            ref_dx = im2col_input_grad(g, w, x.shape, 1)
            np.testing.assert_allclose(winograd_input_grad(g, w), ref_dx, rtol=1e-4, atol=1e-4)
            systems["fwd winograd"] = lambda: winograd.conv3x3(x, w, (1, 1))
            systems["dx winograd"] = lambda: winograd_input_grad(g, w)
        if torch is not None:
            tx, tw, tg_ = torch.tensor(x), torch.tensor(w), torch.tensor(g)
            F = torch.nn.functional
            systems["fwd torch"] = lambda: F.conv2d(tx, tw, stride=stride, padding=1)
            systems["dx torch"] = lambda: torch.nn.grad.conv2d_input(
                tx.shape, tw, tg_, stride=stride, padding=1
            )
            systems["dw torch"] = lambda: torch.nn.grad.conv2d_weight(
                tx, tw.shape, tg_, stride=stride, padding=1
            )
        for f in systems.values():
            f()
        times = time_blocks(systems, args.repeats)
        med = {k: float(np.median(v) * 1e3) for k, v in times.items()}
        table[(c, hw, o, stride)] = med

        def cell(key: str) -> str:
            return f"{med[key]:8.2f}" if key in med else f"{'-':>8}"

        print(
            f"({c},{hw}x{hw})->{o}, s{stride}".ljust(26)
            + f" {cell('fwd winograd')} {cell('fwd im2col')} {cell('fwd torch')}"
            + f" {cell('dx winograd')} {cell('dx im2col')} {cell('dx torch')}"
            + f"  {cell('dw im2col')} {cell('dw torch')}"
        )
    return table


if __name__ == "__main__":
    main()
