"""`import tracegrad` is the core's cost: Numba (ops/lazy_numba.py) and the layers above the core
(nn, optim, models, utils, distributed) are imported on first use."""

import subprocess
import sys
import textwrap


def run(code):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


HEAVY = (
    "numba",
    "llvmlite",
    "scipy",
    "tracegrad.nn",
    "tracegrad.optim",
    "tracegrad.models",
    "tracegrad.utils",
    "tracegrad.distributed",
)


def test_import_tracegrad_imports_neither_numba_nor_the_upper_layers():
    out = run(
        f"""
        import sys
        import tracegrad as tg
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        x = tg.tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()  # plain eager autograd needs no Numba either
        print(x.grad.tolist(), "numba" in sys.modules)
        """
    )
    assert out == ["[]", "[2.0, 4.0] False"]


def test_lazy_kernels_are_made_at_the_first_call_and_rebound():
    out = run(
        """
        import numpy as np
        import tracegrad as tg
        from tracegrad.ops import kernels, nn as ops_nn
        from tracegrad.ops.lazy_numba import Lazy
        early = kernels.exp_array  # held by this script from before the first kernel call
        print(type(kernels.softmax_rows).__name__, type(ops_nn._unfold_kernel).__name__)
        y = tg.softmax(tg.tensor([[1.0, 2.0, 3.0]]), dim=1)
        # every kernel was made; the defining modules' globals now name the dispatchers
        print(type(kernels.softmax_rows).__name__, type(ops_nn._unfold_kernel).__name__)
        e = np.exp([1.0, 2.0, 3.0])
        print(np.allclose(y.numpy(), e / e.sum()))
        # tracegrad's own imports of a kernel were rebound; one held elsewhere forwards
        from tracegrad.ops import elementwise
        print(type(elementwise.exp_array).__name__, isinstance(early, Lazy))
        print(np.allclose(early(np.float32([0.5])), np.exp(0.5)))
        """
    )
    assert out == [
        "Lazy Lazy",
        "CPUDispatcher CPUDispatcher",
        "True",
        "CPUDispatcher True",
        "True",
    ]


def test_the_upper_layers_import_on_first_use():
    out = run(
        """
        import tracegrad as tg
        from tracegrad import optim
        print(tg.nn.Linear(2, 3).weight.shape, optim.SGD.__name__, tg.models.resnet18.__name__)
        print(tg.utils.data.DataLoader.__name__, tg.distributed.is_initialized())
        print(all(m in dir(tg) for m in ("nn", "optim", "models", "utils", "distributed")))
        """
    )
    assert out == ["(3, 2) SGD resnet18", "DataLoader False", "True"]


def test_every_module_imports_after_the_package_and_sees_the_tensor_module():
    # imported after `import tracegrad` (the lazy layers are, now), `from ... import tensor`
    # would get the package's `tg.tensor` *function*, not the module: DDP once did
    out = run(
        """
        import importlib, pkgutil, sys
        import tracegrad
        names = [m.name for m in pkgutil.walk_packages(tracegrad.__path__, "tracegrad.")]
        skip = ("tracegrad.runtime.compile_worker",)
        for name in names:
            if not name.startswith(skip):
                importlib.import_module(name)
        tensor_module = sys.modules["tracegrad.tensor"]
        wrong = [
            f"{m.__name__}.{k}"
            for m in list(sys.modules.values())
            if getattr(m, "__name__", "").startswith("tracegrad")
            for k, v in vars(m).items()
            if v is tracegrad.tensor and k != "tensor"
        ]
        from tracegrad.nn.parallel import distributed as ddp
        print(len(names) > 50, wrong, ddp.tracing is tensor_module.tracing)
        """
    )
    assert out == ["True [] True"]
