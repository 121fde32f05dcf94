"""The benchmark suite: tracegrad against numpy, PyTorch and JAX, in one process.

    python -m benchmarks [--quick] [--only NAME] [--json PATH] [--plot PATH] [--no-peers]

Method, for every timed workload: each system runs once and its result is checked against the
reference system's (tracegrad jit unless said otherwise); a system whose result differs is
reported as WRONG and not timed. Then a warm-up, then the repeats in alternating blocks, each
after a pause (benchmarks/timing.py says why not A B C A B C), and the median with min and
max. Ratios are to tracegrad jit. Peers (PyTorch, torch.compile, JAX) run when installed (extra
`bench`; torch as torch==2.13.0) and are skipped with a one-line note otherwise. Report
workloads (compile times in subprocesses, recompiles) measure one thing each and print it.

The single-workload scripts (fused_mean_square.py, training.py, ...) hold the kernels and
model builders this file reuses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import tracegrad as tg

from .timing import time_blocks

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------------------------
# the data model


@dataclass
class System:
    """One way of computing a workload: `run()` is timed; `check(result)` turns a result into
    arrays comparable with the reference's (None: not comparable, e.g. a memory copy)."""

    name: str
    run: Callable[[], Any]
    check: Callable[[Any], Any] | None = lambda r: r
    limit: bool = False  # a bound (memory bandwidth), not a competitor


@dataclass
class Workload:
    name: str
    title: str
    build: Callable[[], list[System]]  # systems; peers that are missing are left out
    quick: bool = False
    reference: str = "tracegrad jit"
    rtol: float = 1e-4
    atol: float = 1e-6
    repeats: int = 20
    group: str = ""  # workloads drawn as one plot line per system (the seed at several N)
    size: int = 0


@dataclass
class Report:
    """A workload that is not a timing race: it measures and returns its own figures."""

    name: str
    title: str
    measure: Callable[[], dict]
    quick: bool = False


@dataclass
class Options:
    peers: bool = True
    repeats_scale: float = 1.0
    skipped: list = field(default_factory=list)


OPTIONS = Options()


def peer(name: str) -> Any:
    """Import a peer library, or None (with a note) when it is absent or --no-peers."""
    if not OPTIONS.peers:
        return None
    try:
        if name == "jax":
            import jax

            return jax
        import torch

        return torch
    except ImportError:
        note = f"{name} not installed: its systems are skipped"
        if note not in OPTIONS.skipped:
            OPTIONS.skipped.append(note)
            print(f"  note: {note}", flush=True)
        return None


def _arrays(result: Any) -> list[np.ndarray]:
    """A result (Tensor, array, number, torch/jax array, tuple of them) as float64 arrays."""
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in _arrays(r)]
    if isinstance(result, tg.Tensor):
        result = result.detach().numpy()
    elif hasattr(result, "detach"):  # torch
        result = result.detach().numpy()
    return [np.asarray(result, dtype=np.float64)]


def measure_workload(w: Workload, progress: Callable[[str], None] = print) -> dict:
    """Check, then time, the systems of one workload. Returns its JSON record."""
    systems = w.build()
    results: dict[str, dict] = {}
    ref = next((s for s in systems if s.name == w.reference), None)
    ref_value = _arrays(ref.check(ref.run())) if ref is not None and ref.check else None
    timed = []
    for s in systems:
        record = {"system": s.name, "status": "ok", "limit": s.limit}
        results[s.name] = record
        try:
            value = s.run()
        except Exception as e:  # a peer that cannot run this (a missing compiler, ...)
            record.update(status="failed", note=f"{type(e).__name__}: {str(e)[:120]}")
            progress(f"  {w.name:18s} {s.name:18s} FAILED ({record['note']})")
            continue
        if s.check is not None and ref_value is not None and s is not ref:
            got = _arrays(s.check(value))
            same = len(got) == len(ref_value) and all(
                a.shape == b.shape and np.allclose(a, b, rtol=w.rtol, atol=w.atol)
                for a, b in zip(got, ref_value)
            )
            if not same:
                record["status"] = "wrong"
                progress(f"  {w.name:18s} {s.name:18s} WRONG result: not timed")
                continue
        timed.append(s)
    repeats = max(3, int(w.repeats * OPTIONS.repeats_scale))
    for s in timed:  # warm-up
        s.run()
    samples = time_blocks({s.name: s.run for s in timed}, repeats)
    base = statistics.median(samples[w.reference]) if w.reference in samples else None
    for s in timed:
        ms = [t * 1e3 for t in samples[s.name]]
        med = statistics.median(ms)
        results[s.name].update(
            median_ms=med,
            min_ms=min(ms),
            max_ms=max(ms),
            ratio=(med / (base * 1e3)) if base else None,
        )
        ratio = f"{med / (base * 1e3):6.2f}x" if base else "      "
        progress(
            f"  {w.name:18s} {s.name:18s} {med:10.3f} ms  {ratio}  "
            f"(min {min(ms):.3f}, max {max(ms):.3f}, n={repeats})"
        )
    return {
        "name": w.name,
        "title": w.title,
        "kind": "timed",
        "reference": w.reference,
        "group": w.group,
        "size": w.size,
        "results": list(results.values()),
    }


# --------------------------------------------------------------------------------------------
# workloads


def seed(n: int) -> Workload:
    """Value and gradient of SEEDS section 3's mean((2x+1)**2) on n float32 values."""

    def build() -> list[System]:
        from .fused_mean_square import f, hand_fused

        xn = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        x = tg.from_numpy(xn)
        grad, dst = np.empty_like(xn), np.empty_like(xn)
        vg = tg.jit(tg.value_and_grad(f))

        def eager() -> Any:
            xr = x.detach().requires_grad_(True)
            out = f(xr)
            out.backward()
            return out, xr.grad

        def numpy_by_hand() -> Any:
            c = 2 * xn + 1
            return (c * c).mean(), (4.0 / n) * c

        systems = [
            System("tracegrad jit", lambda: vg(x)),
            System("tracegrad eager", eager),
            System("numpy by hand", numpy_by_hand),
            System("hand-fused numba", lambda: (hand_fused(xn, grad), grad)),
            System("np.copyto", lambda: np.copyto(dst, xn), check=None, limit=True),
        ]
        systems += _torch_seed(xn) + _jax_seed(xn)
        return systems

    return Workload(
        f"seed_{n}",
        f"value+grad of mean((2x+1)**2), N={n:.0e}, float32",
        build,
        quick=n in (10**3, 10**5),
        group="seed",
        size=n,
        repeats=20 if n >= 10**6 else 200,
    )


def _torch_seed(xn: np.ndarray) -> list[System]:
    torch = peer("torch")
    if torch is None:
        return []
    xt = torch.from_numpy(xn)

    def step(x: Any) -> Any:
        x = x.detach().requires_grad_()
        out = ((2 * x + 1) ** 2).mean()
        (g,) = torch.autograd.grad(out, x)
        return out, g

    compiled = torch.compile(step)
    return [
        System("pytorch eager", lambda: step(xt)),
        System("torch.compile", lambda: compiled(xt)),
    ]


def _jax_seed(xn: np.ndarray) -> list[System]:
    jax = peer("jax")
    if jax is None:
        return []
    import jax.numpy as jnp

    xj = jnp.asarray(xn)
    jf = jax.jit(jax.value_and_grad(lambda x: jnp.mean((2 * x + 1) ** 2)))
    return [System("jax.jit", lambda: jax.block_until_ready(jf(xj)))]


def cross_entropy() -> Workload:
    def build() -> list[System]:
        import tracegrad.nn.functional as F

        b, c = 4096, 1000
        rng = np.random.default_rng(0)
        xn = rng.standard_normal((b, c)).astype(np.float32)
        labels = rng.integers(0, c, b)
        x, y = tg.from_numpy(xn), tg.tensor(labels)
        vg = tg.jit(tg.value_and_grad(lambda x, y: F.cross_entropy(x, y)))

        def numpy_by_hand() -> Any:
            m = xn.max(1, keepdims=True)
            e = np.exp(xn - m)
            s = e.sum(1, keepdims=True)
            value = -(xn - m - np.log(s))[np.arange(b), labels].mean()
            g = e / s
            g[np.arange(b), labels] -= 1
            return value, g / b

        systems = [
            System("tracegrad jit", lambda: vg(x, y)),
            System(
                "tracegrad eager", lambda: tg.value_and_grad(lambda x: F.cross_entropy(x, y))(x)
            ),
            System("numpy by hand", numpy_by_hand),
        ]
        torch = peer("torch")
        if torch is not None:
            xt, lt = torch.from_numpy(xn), torch.from_numpy(labels)

            def step(x: Any) -> Any:
                x = x.detach().requires_grad_()
                loss = torch.nn.functional.cross_entropy(x, lt)
                return loss, torch.autograd.grad(loss, x)[0]

            systems.append(System("pytorch eager", lambda: step(xt)))
        jax = peer("jax")
        if jax is not None:
            import jax.numpy as jnp

            xj, lj = jnp.asarray(xn), jnp.asarray(labels)

            def loss(x: Any) -> Any:
                logp = jax.nn.log_softmax(x)
                return -jnp.take_along_axis(logp, lj[:, None], axis=1).mean()

            jf = jax.jit(jax.value_and_grad(loss))
            systems.append(System("jax.jit", lambda: jax.block_until_ready(jf(xj))))
        return systems

    return Workload(
        "cross_entropy", "softmax cross-entropy value+grad, 4096x1000 float32", build, repeats=20
    )


def elementwise_loss() -> Workload:
    """Broadcasting and two reductions: mean over rows of sum((x - mu)^2 * w) + mean |tanh x|."""

    def build() -> list[System]:
        rng = np.random.default_rng(0)
        xn = rng.standard_normal((2048, 512)).astype(np.float32)
        mun = rng.standard_normal(512).astype(np.float32)
        wn = rng.uniform(0.5, 1.5, 512).astype(np.float32)
        x, mu, w = tg.from_numpy(xn), tg.from_numpy(mun), tg.from_numpy(wn)

        def loss(x: Any) -> Any:
            return ((x - mu) ** 2 * w).sum(1).mean() + x.tanh().abs().mean()

        vg = tg.jit(tg.value_and_grad(loss))

        def numpy_by_hand() -> Any:
            d = xn - mun
            t = np.tanh(xn)
            value = (d * d * wn).sum(1).mean() + np.abs(t).mean()
            g = 2 * d * wn / xn.shape[0] + np.sign(t) * (1 - t * t) / xn.size
            return value, g

        systems = [
            System("tracegrad jit", lambda: vg(x)),
            System("tracegrad eager", lambda: tg.value_and_grad(loss)(x)),
            System("numpy by hand", numpy_by_hand),
        ]
        torch = peer("torch")
        if torch is not None:
            xt, mut, wt = (torch.from_numpy(a) for a in (xn, mun, wn))

            def step(x: Any) -> Any:
                x = x.detach().requires_grad_()
                out = ((x - mut) ** 2 * wt).sum(1).mean() + x.tanh().abs().mean()
                return out, torch.autograd.grad(out, x)[0]

            compiled = torch.compile(step)
            systems += [
                System("pytorch eager", lambda: step(xt)),
                System("torch.compile", lambda: compiled(xt)),
            ]
        jax = peer("jax")
        if jax is not None:
            import jax.numpy as jnp

            xj, muj, wj = (jnp.asarray(a) for a in (xn, mun, wn))
            jf = jax.jit(
                jax.value_and_grad(
                    lambda x: ((x - muj) ** 2 * wj).sum(1).mean() + jnp.abs(jnp.tanh(x)).mean()
                )
            )
            systems.append(System("jax.jit", lambda: jax.block_until_ready(jf(xj))))
        return systems

    return Workload(
        "elementwise_loss",
        "broadcasting loss, two reductions, 2048x512 float32",
        build,
        quick=True,
        repeats=50,
    )


def _first_loss(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Training systems change their weights at every call: compare the loss of the FIRST
    call (same weights, same data) and time later calls."""
    state: dict = {}

    def run() -> Any:
        out = fn()
        state.setdefault("first", float(out))
        return out

    run.first = state  # type: ignore[attr-defined]
    return run


def training(
    name: str,
    title: str,
    make_model: Callable,
    torch_build: Any,
    shape: tuple,
    classes: int,
    quick: bool,
    repeats: int,
    jax_step: Any = None,
) -> Workload:
    def build() -> list[System]:
        from . import training as T

        rng = np.random.default_rng(0)
        xn = rng.standard_normal(shape).astype(np.float32)
        yn = rng.integers(0, classes, shape[0])
        x, y = tg.tensor(xn), tg.tensor(yn)
        tg.manual_seed(0)
        base = make_model()
        systems = []
        for label, compiled in (("tracegrad jit", True), ("tracegrad eager", False)):
            model = make_model()
            model.load_state_dict(base.state_dict())
            step = T._tg_step(model, 0.01)
            if compiled:
                step = tg.jit(step)
                step(x, y)  # the eager first call (SGD creates its momentum buffers)
            else:
                step(x, y)
            runner = _first_loss(lambda step=step: step(x, y).item())
            systems.append(
                System(label, runner, check=lambda r, runner=runner: runner.first["first"])
            )
        # the torch.compile(model) loop: tg.jit(model), eager backward() and opt.step()
        model = make_model()
        model.load_state_dict(base.state_dict())
        cstep = T._tg_compiled_module_step(model, 0.01, compile_step=False)
        cstep(x, y)
        runner = _first_loss(lambda: cstep(x, y).item())
        systems.append(
            System(
                "tracegrad jit(model)", runner, check=lambda r, runner=runner: runner.first["first"]
            )
        )
        if peer("torch") is not None and torch_build is not None:
            for label, compiled in (("pytorch eager", False), ("torch.compile(model)", True)):
                t = T._torch_twin(base, torch_build, 0.01, compiled=compiled)
                t(xn, yn)
                runner = _first_loss(lambda t=t: t(xn, yn))
                systems.append(
                    System(label, runner, check=lambda r, runner=runner: runner.first["first"])
                )
        if jax_step is not None and peer("jax") is not None:
            j = jax_step(base, 0.01)
            j(xn, yn)
            runner = _first_loss(lambda: j(xn, yn))
            systems.append(
                System("jax.jit", runner, check=lambda r, runner=runner: runner.first["first"])
            )
        return systems

    # first losses after one update: float32 rounding in a batch-1 BatchNorm drifts a little
    return Workload(name, title, build, quick=quick, repeats=repeats, rtol=2e-3)


def gpt() -> Workload:
    """The nanoGPT-style training step of benchmarks/gpt.py (issue #17's model)."""

    def build() -> list[System]:
        from . import gpt as G

        torch = peer("torch")
        runs = G.systems(peers=torch is not None, torch_compile=torch is not None)
        systems = []
        for name, run in runs.items():
            runner = _first_loss(run)
            systems.append(
                System(name, runner, check=lambda r, runner=runner: runner.first["first"])
            )
        return systems

    return Workload(
        "gpt",
        "char GPT train step (2 blocks, 64 wide, 4 heads, 16x32 tokens), AdamW + clipping",
        build,
        repeats=20,
        rtol=1e-4,
    )


def dispatch() -> Workload:
    """Per-call overhead: a cached jitted value_and_grad on a 2x3 input."""

    def build() -> list[System]:
        x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()))
        systems = [System("tracegrad jit", lambda: f(x))]
        jax = peer("jax")
        if jax is not None:
            import jax.numpy as jnp

            xj = jnp.asarray(x.numpy())
            jf = jax.jit(jax.value_and_grad(lambda x: jnp.mean((2 * x + 1) ** 2)))
            systems.append(System("jax.jit", lambda: jax.block_until_ready(jf(xj))))
        systems += [s for s in _torch_seed(x.numpy()) if s.name == "torch.compile"]
        return systems

    return Workload(
        "dispatch_2x3",
        "cached jitted value+grad on a 2x3 input (per call)",
        build,
        quick=True,
        repeats=2000,
    )


def eager_overhead() -> Workload:
    def build() -> list[System]:
        from .eager_overhead import DATA, step_numpy_by_hand, step_tracegrad

        x = tg.tensor(DATA, requires_grad=True)
        xn = np.asarray(DATA)

        def tg_step() -> Any:
            step_tracegrad(x)
            return x.grad

        systems = [
            System("tracegrad eager", tg_step),
            System("numpy by hand", lambda: step_numpy_by_hand(xn)[1]),
        ]
        torch = peer("torch")
        if torch is not None:
            xt = torch.tensor(DATA, requires_grad=True)

            def torch_step() -> Any:
                xt.grad = None
                ((2 * xt + 1) ** 2).mean().backward()
                return xt.grad

            systems.append(System("pytorch eager", torch_step))
        return systems

    return Workload(
        "eager_overhead",
        "eager forward+backward of SEEDS section 3 (2x3)",
        build,
        quick=True,
        reference="tracegrad eager",
        repeats=2000,
    )


def compile_times() -> Report:
    def run() -> dict:
        from .jit_overhead import first_calls

        (imp0, cold, c0, h0), (imp1, warm, c1, h1) = first_calls()
        return {
            "cold_first_call_s": cold,
            "cold_compiled": c0,
            "warm_disk_first_call_s": warm,
            "warm_disk_loaded": h1,
            "import_s": imp1,
        }

    return Report(
        "compile_time",
        "first call of a new graph: cold, and in a new process "
        "with a warm disk cache (subprocesses)",
        run,
        quick=True,
    )


def recompiles() -> Report:
    def run() -> dict:
        # a graph no other workload compiles, so the count is this report's own
        vg = tg.jit(tg.value_and_grad(lambda x: ((3 * x - 1) ** 2).sum()))
        sizes = (1000, 2000, 3000, 4000)
        for n in sizes:
            vg(tg.ones(n))
        out = {
            "batch_sizes": list(sizes),
            "tracegrad_traces": vg.stats["traces"],
            # compiled now, or loaded from an earlier run's disk cache: either way, once
            "tracegrad_compiles": vg.stats["compiles"] + vg.stats["disk_hits"],
        }
        jax = peer("jax")
        if jax is not None:
            import jax.numpy as jnp

            jf = jax.jit(jax.value_and_grad(lambda x: jnp.mean((2 * x + 1) ** 2)))
            for n in sizes:
                jax.block_until_ready(jf(jnp.ones(n)))
            out["jax_compiles"] = jf._cache_size()
        return out

    return Report("recompiles", "compilations when the batch size changes 4 times", run, quick=True)


def workloads() -> list[Any]:
    from . import training as T

    return [
        *(seed(10**k) for k in range(3, 8)),
        elementwise_loss(),
        cross_entropy(),
        training(
            "mlp",
            "MLP 784-512-512-10 train step, batch 256, SGD momentum",
            lambda: T._mlp(tg),
            T._mlp,
            (256, 784),
            10,
            False,
            30,
            T._jax_mlp_step,
        ),
        training(
            "resnet18_b1",
            "ResNet-18 train step 1x3x64x64, SGD momentum",
            tg.models.resnet18,
            T._torch_resnet,
            (1, 3, 64, 64),
            1000,
            False,
            8,
        ),
        training(
            "resnet18_b16",
            "ResNet-18 train step 16x3x64x64, SGD momentum",
            tg.models.resnet18,
            T._torch_resnet,
            (16, 3, 64, 64),
            1000,
            False,
            6,
        ),
        gpt(),
        dispatch(),
        eager_overhead(),
        compile_times(),
        recompiles(),
    ]


# --------------------------------------------------------------------------------------------
# output


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tracegrad": tg.__version__,
    }
    import numba

    versions["numba"] = numba.__version__
    for lib in ("torch", "jax"):
        mod = sys.modules.get(lib)
        if mod is not None:
            versions[lib] = mod.__version__
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
    }


def markdown(records: list[dict]) -> str:
    lines = [
        "| workload | system | median ms | min | max | vs tracegrad jit | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    reports = []
    for r in records:
        if r["kind"] == "report":
            reports.append(r)
            continue
        for s in r["results"]:
            if "median_ms" in s:
                ratio = f"{s['ratio']:.2f}x" if s.get("ratio") is not None else ""
                lines.append(
                    f"| {r['name']} | {s['system']} | {s['median_ms']:.3f} | {s['min_ms']:.3f} "
                    f"| {s['max_ms']:.3f} | {ratio} | {'limit' if s['limit'] else s['status']} |"
                )
            else:
                lines.append(f"| {r['name']} | {s['system']} | | | | | {s['status'].upper()} |")
    for r in reports:
        figures = ", ".join(f"{k} = {_fmt(v)}" for k, v in r["figures"].items())
        lines.append(f"\n**{r['name']}** ({r['title']}): {figures}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def plot(records: list[dict], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install -e '.[bench]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list] = {}
    for r in records:
        if r.get("group") != "seed":
            continue
        for s in r["results"]:
            if "median_ms" in s:
                lines.setdefault(s["system"], []).append((r["size"], s["median_ms"]))
    if not lines:
        raise SystemExit("--plot needs the seed workloads (seed_1000 ... seed_10000000)")
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in sorted(lines.items()):
        pts.sort()
        style = dict(linestyle="--", color="gray") if name == "np.copyto" else {}
        label = "np.copyto (memory bandwidth)" if name == "np.copyto" else name
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (float32 elements)")
    ax.set_ylabel("median time per call (ms)")
    ax.set_title("value and gradient of mean((2x+1)**2)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="the quick subset, fewer repeats")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="a workload's name, or the start of several (repeatable)",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    parser.add_argument("--plot", metavar="PATH", help="plot the seed workload's time vs N")
    parser.add_argument("--no-peers", action="store_true", help="skip PyTorch and JAX")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail now, not after the whole run)
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install -e '.[bench]'") from None
    if args.device == "cuda":
        # the GPU workload (value and gradient of mean((2x+1)**2) at N = 1e8 against a device
        # copy, PyTorch and torch.compile on CUDA) lives in benchmarks/cuda.py
        from . import cuda as cuda_bench

        cuda_bench.main(["--repeats", "5"] if args.quick else [])
        return []
    OPTIONS.peers = not args.no_peers
    OPTIONS.repeats_scale = 0.25 if args.quick else 1.0
    chosen = [w for w in workloads() if (w.quick or not args.quick)]
    names = {w.name for w in chosen}
    if args.only:
        # an exact name, else every workload the name starts (--only seed: all sizes)
        chosen = [
            w
            for w in chosen
            if any(w.name == p or (p not in names and w.name.startswith(p)) for p in args.only)
        ]
        if not chosen:
            names = ", ".join(w.name for w in workloads())
            raise SystemExit(f"--only {args.only}: no such workload; choose from {names}")
    info = machine()
    print(
        f"tracegrad benchmarks on {info['cpu']} ({info['cores']} cores); "
        f"{', '.join(f'{k} {v}' for k, v in info['versions'].items())}",
        flush=True,
    )
    records = []
    for w in chosen:
        print(f"{w.name}: {w.title}", flush=True)
        if isinstance(w, Report):
            figures = w.measure()
            print("  " + ", ".join(f"{k} = {_fmt(v)}" for k, v in figures.items()), flush=True)
            records.append({"name": w.name, "title": w.title, "kind": "report", "figures": figures})
        else:
            records.append(measure_workload(w, lambda line: print(line, flush=True)))
    print()
    print(markdown(records))
    # (again: the peers' versions are known once they have been imported)
    out = {
        "schema": SCHEMA_VERSION,
        "machine": machine(),
        "skipped": OPTIONS.skipped,
        "workloads": records,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    if args.plot:
        plot(records, args.plot)
    return records


if __name__ == "__main__":  # pragma: no cover
    main()
