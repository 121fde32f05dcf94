"""The CUDA target: value and gradient of mean((2x+1)**2) on N float32 values on the GPU.

Compares, interleaved in one process (ratios of medians, every call synchronized):
* tracegrad: tg.jit(tg.value_and_grad(f), device="cuda") on a CUDA tensor (one grid-stride
  kernel computes the value and the gradient, codegen/cuda.py; a one-thread kernel finishes);
* a plain device-to-device copy of N float32 (the memory-bandwidth floor: the gradient pass
  reads x and writes the gradient, as the copy reads and writes N values); goal <= 1.3x;
* a hand-written fused numba.cuda kernel of the same math;
* PyTorch eager and torch.compile on CUDA, when torch with CUDA is installed (goal: faster).

Every system's result is checked against a float64 numpy reference before it is timed.

Run on a GPU machine: python -m benchmarks.cuda [--n 100000000] [--repeats 20]
Smoke test without a GPU: NUMBA_ENABLE_CUDASIM=1 python -m benchmarks.cuda --n 1000 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import cuda, float64

import tracegrad as tg
from tracegrad import devices as cuda_device


def f(x: Any) -> Any:
    return ((2 * x + 1) ** 2).mean()


@cuda.jit
def hand_fused_kernel(x, grad, acc, scale):  # noqa: ANN001, ANN201
    # the same math as tracegrad's kernel, written by hand: a grid-stride loop, per-thread
    # float64 sums, a shared-memory tree per block and one atomic add per block
    sh = cuda.shared.array(256, float64)
    t = cuda.grid(1)
    a = 0.0
    while t < x.size:
        c = np.float32(2.0) * x[t] + np.float32(1.0)
        a += c * c
        grad[t] = scale * c
        t += cuda.gridsize(1)
    sh[cuda.threadIdx.x] = a
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if cuda.threadIdx.x < s:
            sh[cuda.threadIdx.x] += sh[cuda.threadIdx.x + s]
        cuda.syncthreads()
        s //= 2
    if cuda.threadIdx.x == 0:
        cuda.atomic.add(acc, 0, sh[0])


def hand_fused(x: Any, grad: Any) -> Any:
    from tracegrad.codegen.cuda_helpers import grid, zeros

    acc = zeros(1, np.float64)
    hand_fused_kernel[grid(x.size)](x, grad, acc, np.float32(4.0 / x.size))
    return acc


def systems(n: int) -> tuple[dict[str, Callable], Callable, np.ndarray]:
    cuda_device.cuda()  # a clear error without a GPU (or the simulator)
    host = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    x = tg.tensor(host, device="cuda")
    d_x = x._data
    d_out = cuda.device_array_like(d_x)
    jf = tg.jit(tg.value_and_grad(f), device="cuda")
    grad_buf = cuda.device_array_like(d_x)
    out: dict[str, Callable] = {
        "tracegrad jit (cuda)": lambda: jf(x),
        "device copy (limit)": lambda: d_out.copy_to_device(d_x),
        "hand-fused numba.cuda": lambda: hand_fused(d_x, grad_buf),
    }
    try:
        import torch

        if torch.cuda.is_available():
            tx = torch.tensor(host, device="cuda", requires_grad=True)

            def torch_eager() -> Any:
                return torch.func.grad_and_value(f)(tx)

            compiled = torch.compile(torch.func.grad_and_value(f))
            out["pytorch eager (cuda)"] = torch_eager
            out["torch.compile (cuda)"] = lambda: compiled(tx)
    except ImportError:
        pass

    def sync() -> None:
        cuda.synchronize()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        except ImportError:
            pass

    return out, sync, host


def check(name: str, result: Any, host: np.ndarray) -> None:
    """Value and gradient against float64 numpy (the copy is checked to copy)."""
    if name.startswith("device copy") or name.startswith("hand-fused"):
        return
    if name.startswith("tracegrad"):
        value, grad = result
        value, grad = value.item(), grad.cpu().numpy()
    else:
        grad, value = result
        value, grad = float(value), grad.detach().cpu().numpy()
    x = host.astype(np.float64)
    np.testing.assert_allclose(value, ((2 * x + 1) ** 2).mean(), rtol=1e-4)
    np.testing.assert_allclose(grad, 4 * (2 * x + 1) / x.size, rtol=1e-4, atol=1e-12)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda")
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    fns, sync, host = systems(args.n)
    print(f"device: {cuda_device.device_name()}; N = {args.n:,} float32")
    for name, fn in list(fns.items()):  # warm up (compile) and check; drop what fails
        try:
            check(name, fn(), host)
            sync()
        except AssertionError as e:
            print(f"{name}: WRONG result, not timed ({str(e).splitlines()[0]})")
            del fns[name]
        except Exception as e:  # a peer that does not run here
            print(f"{name}: FAILED, not timed ({type(e).__name__}: {e})")
            del fns[name]
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():  # interleaved: drifts hit every system alike
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["tracegrad jit (cuda)"])
    medians = {}
    print(f"{'system':<26} {'median ms':>10} {'min ms':>9} {'vs tracegrad':>13}")
    for name, ts in times.items():
        med = statistics.median(ts)
        medians[name] = med
        print(f"{name:<26} {med * 1e3:>10.3f} {min(ts) * 1e3:>9.3f} {med / base:>12.2f}x")
    copy = medians["device copy (limit)"]
    print(f"tracegrad / device copy = {base / copy:.2f}x (goal <= 1.3x)")
    return medians


if __name__ == "__main__":
    main()
