"""Training steps: ResNet-18 (1x3x64x64 and 16x3x64x64, SGD-momentum) and an MLP
784-512-512-10 (batch 256, SGD-momentum); tracegrad eager and jitted vs PyTorch eager (and
jax.jit for the MLP) when installed.

Every system starts from the same weights and data; the losses of the warm-up steps (which
compile) are checked against tracegrad eager's before anything is timed.
Steps are timed in alternating blocks per system (benchmarks/timing.py); medians in ms.

The compiled-module loop (`tg.jit(model)` with eager `backward()` and `opt.step()`, or with
`tg.jit(opt.step)` too) runs next to the whole-step jit, and `torch.compile(model)` next to
PyTorch eager, with the same loop.

Run: python -m benchmarks.training [--only resnet|mlp] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn

from .timing import time_blocks


def _tg_step(model: nn.Module, lr: float) -> Callable:
    opt = tg.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _tg_compiled_module_step(model: nn.Module, lr: float, compile_step: bool) -> Callable:
    """The loop PyTorch users write around `torch.compile(model)`: `tg.jit(model)` (a
    compiled forward and backward), eager `backward()`; `opt.step` eager or `tg.jit`ed."""
    cmodel = tg.jit(model)
    opt = tg.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    update = tg.jit(opt.step) if compile_step else opt.step

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        loss = F.cross_entropy(cmodel(x), y)
        loss.backward()
        update()
        return loss

    return step


def _torch_twin(
    model: nn.Module, build: Callable, lr: float, compiled: bool = False
) -> Callable | None:
    try:
        import torch
    except ImportError:
        return None
    tmodel = build(torch)
    tmodel.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    )
    opt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=0.9)

    run_model = torch.compile(tmodel) if compiled else tmodel

    def step(x: np.ndarray, y: np.ndarray) -> float:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            run_model(torch.from_numpy(x)), torch.from_numpy(y)
        )
        loss.backward()
        opt.step()
        return loss.item()

    return step


def _torch_resnet(torch: Any) -> Any:
    """torchvision's resnet18 written out (torchvision is not a dependency)."""
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout)
                )

        def forward(self, x: Any) -> Any:
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + idt)

    class ResNet(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            chans = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
            for i, (cin, cout, s) in enumerate(chans, 1):
                setattr(
                    self, f"layer{i}", tnn.Sequential(Block(cin, cout, s), Block(cout, cout, 1))
                )
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(512, 1000)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def _mlp(lib: Any) -> Any:
    n = lib.nn
    return n.Sequential(
        n.Linear(784, 512), n.ReLU(), n.Linear(512, 512), n.ReLU(), n.Linear(512, 10)
    )


def _jax_mlp_step(model: nn.Module, lr: float) -> Callable | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    params = [
        (jnp.asarray(model[i].weight.detach().numpy()), jnp.asarray(model[i].bias.detach().numpy()))
        for i in (0, 2, 4)
    ]
    bufs = jax.tree_util.tree_map(jnp.zeros_like, params)

    def loss_fn(params: Any, x: Any, y: Any) -> Any:
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < 2:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    @jax.jit
    def update(params: Any, bufs: Any, x: Any, y: Any) -> Any:
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        bufs = jax.tree_util.tree_map(lambda b, gi: 0.9 * b + gi, bufs, g)
        params = jax.tree_util.tree_map(lambda p, b: p - lr * b, params, bufs)
        return params, bufs, loss

    state = {"p": params, "b": bufs, "first": True}

    def step(x: np.ndarray, y: np.ndarray) -> float:
        if state["first"]:  # PyTorch's first momentum step: the buffer is the gradient
            loss, g = jax.value_and_grad(loss_fn)(state["p"], x, y)
            state["b"] = g
            state["p"] = jax.tree_util.tree_map(lambda p, b: p - lr * b, state["p"], g)
            state["first"] = False
            return float(loss)
        state["p"], state["b"], loss = update(state["p"], state["b"], x, y)
        return float(loss.block_until_ready())

    return step


def run(
    name: str,
    make_model: Callable,
    torch_build: Callable | None,
    shape: tuple,
    classes: int,
    repeats: int,
    jax_step: Callable | None = None,
    compiled_module: bool = True,
) -> dict:
    """`compiled_module`: also time the `tg.jit(model)` loop (and `torch.compile(model)`)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, classes, shape[0])
    tg.manual_seed(0)
    base = make_model()
    systems: dict[str, Callable] = {}
    eager_model = make_model()
    eager_model.load_state_dict(base.state_dict())
    eager = _tg_step(eager_model, 0.01)
    systems["tracegrad eager"] = lambda: eager(tg.tensor(x), tg.tensor(y)).item()
    jit_model = make_model()
    jit_model.load_state_dict(base.state_dict())
    jitted = tg.jit(_tg_step(jit_model, 0.01))
    systems["tracegrad jit"] = lambda: jitted(tg.tensor(x), tg.tensor(y)).item()
    if compiled_module:
        for label, compile_step in (("jit(model)", False), ("jit(model)+jit(step)", True)):
            m = make_model()
            m.load_state_dict(base.state_dict())
            cstep = _tg_compiled_module_step(m, 0.01, compile_step)
            systems[f"tracegrad {label}"] = lambda cstep=cstep: cstep(
                tg.tensor(x), tg.tensor(y)
            ).item()
    if torch_build is not None:
        t = _torch_twin(base, torch_build, 0.01)
        if t is not None:
            systems["pytorch eager"] = lambda: t(x, y)
        tc = _torch_twin(base, torch_build, 0.01, compiled=True) if compiled_module else None
        if tc is not None:
            systems["torch.compile(model)"] = lambda: tc(x, y)
    if jax_step is not None:
        j = jax_step(base, 0.01)
        if j is not None:
            systems["jax.jit"] = lambda: j(x, y)
    # warm-up: the first steps (jit: eager call + trace + compile); then a correctness check
    start = time.perf_counter()
    first = {k: [f() for _ in range(3)] for k, f in systems.items()}
    warm = time.perf_counter() - start
    # the first loss (same weights, same data) must agree closely; later ones drift apart in
    # float32 (a batch-1 BatchNorm over 2x2 maps amplifies rounding; in float64 tracegrad and
    # PyTorch agree to 1e-13 after three ResNet-18 steps)
    for k, losses in first.items():
        if not np.isclose(losses[0], first["tracegrad eager"][0], rtol=1e-4) or not np.allclose(
            losses, first["tracegrad eager"], rtol=0.2
        ):
            raise SystemExit(
                f"{name}: {k} gives losses {losses}, tracegrad eager "
                f"{first['tracegrad eager']}: WRONG, not timed"
            )
    times = time_blocks(systems, repeats)
    med = {k: float(np.median(v) * 1e3) for k, v in times.items()}
    print(
        f"{name}: median of {repeats} steps in alternating blocks "
        f"(warm-up incl. compile {warm:.1f} s)"
    )
    for k, ms in med.items():
        ratio = ms / med["tracegrad jit"]
        print(f"  {k:16s} {ms:9.2f} ms   ({ratio:.2f}x tracegrad jit)")
    return med


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["resnet", "mlp"])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    out = {}
    if args.only in (None, "mlp"):
        out["mlp"] = run(
            "MLP 784-512-512-10, batch 256, SGD momentum",
            lambda: _mlp(tg),
            _mlp,
            (256, 784),
            10,
            args.repeats * 5,
            jax_step=_jax_mlp_step,
        )
    if args.only in (None, "resnet"):
        for batch in (1, 16):
            out[f"resnet18 {batch}"] = run(
                f"ResNet-18 training step, {batch}x3x64x64, SGD momentum",
                tg.models.resnet18,
                _torch_resnet,
                (batch, 3, 64, 64),
                1000,
                args.repeats,
            )
    return out


if __name__ == "__main__":
    main()
