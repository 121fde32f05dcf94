"""tracegrad: PyTorch's eager autograd and JAX's transforms, compiled with Numba.

>>> import tracegrad as tg
>>> x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
>>> out = ((2 * x + 1) ** 2).mean()
>>> out
tensor(75.6667, grad_fn=<MeanBackward0>)
>>> out.backward()
>>> x.grad
tensor([[2.0000, 3.3333, 4.6667],
        [6.0000, 7.3333, 8.6667]])
"""

from . import (
    _tensor_methods,  # attaches the math and shape methods to Tensor
    accelerator,
    autograd,
    cuda,
    ops,
)
from . import functions as _functions
from ._tensor_str import set_printoptions
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .autograd.functional import grad, hessian, jacobian, jacrev, jvp, value_and_grad, vjp
from .autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck
from .creation import *  # noqa: F403
from .creation import bool, float, float16, float32, float64, int32, int64
from .functions import *  # noqa: F403
from .functions import abs, all, any, max, min, pow, sum
from .io import load, save
from .runtime import compile, jit  # noqa: A004  (torch.compile)
from .runtime import heap as _heap
from .tape import TracerError
from .tensor import Device, Size, Tensor
from .trace import make_tape

device = Device
dtype = type(float32)

# out= on the functional forms (tg.add(a, b, out=c)); Tensor methods keep the plain ones
for _name in _functions.OUT_FUNCTIONS:
    globals()[_name] = _functions.with_out(getattr(_functions, _name))
del _name

__version__ = "0.1.0"

# freed memory stays for the next eager step instead of being faulted in again (runtime/heap.py)
_heap.tune()


# The layers above the core are imported on first use (`tg.nn`, `from tracegrad import optim`,
# `import tracegrad.models`): `import tracegrad` stays the core's cost (docs/layout.md).
_LAZY_SUBPACKAGES = ("distributed", "models", "nn", "optim", "utils")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))
