"""Creating tensors: `tg.tensor`, `tg.zeros`, `tg.rand`, ... with PyTorch's signatures and
default dtypes (float32 for floating data, int64 for integers)."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from . import devices, ops
from .tape.errors import TracerError, user_location
from .tensor import Tensor, _check_device, _to_array, tracing

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
int16 = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool = np.dtype(np.bool_)  # noqa: A001 - tg.bool, as torch.bool
float = float32  # noqa: A001 - torch.float
double = float64
long = int64
half = float16


_rng = np.random.default_rng()

# The counter-based generator of tg.rand, randn, randint and dropout (ops/random.py): its state
# (seed, offset) is a tensor, so that inside tg.jit it is captured state -- read at every call
# and advanced in place after it -- and compiled steps draw fresh numbers, the eager ones.
_STATE = Tensor._wrap(np.array([np.random.SeedSequence().entropy % (1 << 63), 0], dtype=np.int64))


def manual_seed(seed: int) -> np.random.Generator:
    """Seed tracegrad's random number generators: the counter-based one of tg.rand, randn,
    randint and dropout (eagerly and inside tg.jit alike), and the one of weight
    initialisation, randperm and multinomial."""
    global _rng
    seed = int(seed)
    _rng = np.random.default_rng(seed)
    state = np.array([seed], dtype=np.uint64).view(np.int64)[0]
    from .autograd.grad_mode import no_grad

    with no_grad():  # in place: jitted functions that captured the state keep reading it
        _STATE.copy_(Tensor._wrap(np.array([state, 0], dtype=np.int64)))
    return _rng


def _draw(shape: tuple, dtype: Any) -> Tensor:
    """Uniform [0, 1) numbers of `shape` from the counter-based generator, which advances."""
    from .autograd.grad_mode import no_grad

    n = 1
    for d in shape:
        n *= d
    with no_grad():
        u = ops.uniform(_STATE, shape=tuple(shape), dtype=np.dtype(dtype))
        if n:
            _STATE.add_(Tensor._wrap(np.array([0, n], dtype=np.int64)))
    return u


def _finish_drawn(t: Tensor, requires_grad: bool, device: Any) -> Tensor:
    if device is None:
        device = _default_device[0]
    # (inside a trace the jit target decides where values live: no move)
    if device is not None and _check_device(device).type == "cuda" and tracing.tracer is None:
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def generator() -> np.random.Generator:
    return _rng


class Generator:
    """A random number generator of its own, as `torch.Generator`: seeded with
    `manual_seed(n)` (which returns it, so `tg.Generator().manual_seed(42)` works), given to
    `tg.randperm(n, generator=g)`, `tg.utils.data.random_split` and `DataLoader(generator=g)`
    so that their draws do not move the global generator's. A numpy Generator underneath."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        self._seed = int(np.random.SeedSequence().entropy % (1 << 63))
        self._rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Reseed from fresh entropy; returns the new seed."""
        self.manual_seed(int(np.random.SeedSequence().entropy % (1 << 63)))
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        self._rng.bit_generator.state = state
        return self


def _numpy_rng(generator: Any) -> np.random.Generator:
    """The numpy Generator behind `generator` (a tg.Generator, a numpy Generator, or None for
    the global one)."""
    if generator is None:
        return _rng
    if isinstance(generator, Generator):
        return generator._rng
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(
        f"generator must be a tg.Generator (or a numpy Generator), got {type(generator).__name__}"
    )


def _random_allowed(fn: str) -> None:
    # A draw made while tracing would be frozen into the tape: every call would reuse the
    # same numbers. Refuse it rather than return silently non-random values.
    if tracing.tracer is not None:
        raise TracerError(
            f"{user_location()}: tg.{fn} inside a jitted function would draw its random "
            "numbers once, at trace time, and reuse them on every call. Draw them outside and "
            "pass them in as an argument."
        )


_default_device: list = [None]  # tg.set_default_device; None: the CPU


def set_default_device(device: Any) -> None:
    """The device factory functions (`tg.zeros`, `tg.tensor`, `tg.randn`, ...) use when given
    none, as `torch.set_default_device`; None or "cpu" for the CPU."""
    _default_device[0] = None if device is None else _check_device(device)


def get_default_device() -> Any:
    from .tensor import Device

    d = _default_device[0]
    return Device("cpu") if d is None else d


def _finish(arr: np.ndarray, requires_grad: bool, device: Any) -> Tensor:
    if device is None:
        device = _default_device[0]
    if device is not None and _check_device(device).type == "cuda":
        arr = devices.to_device(arr)
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _size(args: tuple, fn: str) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    for a in args:
        if not isinstance(a, (int, np.integer)) or a < 0:
            raise ValueError(f"{fn}: sizes must be non-negative ints, got {args}")
    return tuple(int(a) for a in args)


def _dtype(dtype: Any, default: np.dtype = float32) -> np.dtype:
    return default if dtype is None else np.dtype(dtype)


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (numbers, nested lists, arrays, tensors).

    >>> import tracegrad as tg
    >>> tg.tensor([[1.0, 2.0], [3.0, 4.0]])
    tensor([[1., 2.],
            [3., 4.]])
    """
    return _finish(_to_array(data, dtype), requires_grad, device)


def as_tensor(data: Any, dtype: Any = None) -> Tensor:
    """Like `tensor`, but shares memory with a numpy array or tensor when it can."""
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or np.dtype(dtype) == data.dtype):
        return Tensor._wrap(data)
    return tensor(data, dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with `array`: changes to one show in the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype}")
    return Tensor._wrap(array)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.zeros(_size(size, "zeros"), _dtype(dtype)), requires_grad, device)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.ones(_size(size, "ones"), _dtype(dtype)), requires_grad, device)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.empty(_size(size, "empty"), _dtype(dtype)), requires_grad, device)


def full(
    size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    if dtype is None:
        dtype = _to_array(fill_value, None).dtype
    return _finish(
        np.full(_size((size,), "full"), fill_value, np.dtype(dtype)), requires_grad, device
    )


def arange(
    start: Any,
    end: Any = None,
    step: Any = 1,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """Values from start (default 0) to end (exclusive) by step; int64 unless a bound is a
    float, then float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        floating = any(isinstance(v, (np.floating, builtins.float)) for v in (start, end, step))
        dtype = float32 if floating else int64
    return _finish(np.arange(start, end, step).astype(dtype), requires_grad, device)


def linspace(
    start: Any,
    end: Any,
    steps: int,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    return _finish(np.linspace(start, end, steps).astype(_dtype(dtype)), requires_grad, device)


def eye(
    n: int,
    m: int | None = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    return _finish(np.eye(n, m, dtype=_dtype(dtype)), requires_grad, device)


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1), from the counter-based generator (also inside tg.jit, where
    every call draws new ones)."""
    dt = _dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f'"rand" not implemented for {dt} (a floating dtype is needed)')
    return _finish_drawn(_draw(_size(size, "rand"), dt), requires_grad, device)


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples (Box-Muller on pairs of uniforms, computed in float64)."""
    dt = _dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f'"randn" not implemented for {dt} (a floating dtype is needed)')
    shape = _size(size, "randn")
    u = _draw((2, *shape), np.float64)
    radius = ops.sqrt(ops.mul(ops.log1p(ops.neg(u[0])), -2.0))
    z = ops.mul(radius, ops.cos(ops.mul(u[1], 2.0 * np.pi)))
    return _finish_drawn(ops.astype(z, dtype=dt) if dt != z.dtype else z, requires_grad, device)


def randint(
    low: int, high: Any = None, size: Any = None, dtype: Any = None, device: Any = None
) -> Tensor:
    """Integers in [low, high); `randint(high, size)` starts at 0, as PyTorch."""
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: size is required, e.g. tg.randint(0, 10, (3,))")
    if high <= low:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    u = _draw(_size((size,), "randint"), np.float64)
    # truncation is the floor here: u * (high - low) >= 0
    k = ops.astype(ops.mul(u, builtins.float(high - low)), dtype=np.dtype(np.int64))
    out = ops.add(k, builtins.int(low)) if low else k
    dt = _dtype(dtype, int64)
    return _finish_drawn(ops.astype(out, dtype=dt) if dt != out.dtype else out, False, device)


def multinomial(
    input: Any,  # noqa: A002
    num_samples: int,
    replacement: bool = False,
    *,
    generator: Any = None,
) -> Tensor:
    """Draw `num_samples` category indices per row of `input` (1-d or 2-d non-negative weights,
    not necessarily normalized), with or without replacement (int64)."""
    _random_allowed("multinomial")
    t = input if isinstance(input, Tensor) else Tensor(input)
    p = np.asarray(t.detach().cpu().numpy() if t.device != "cpu" else t.detach().numpy())
    if p.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape {p.shape}")
    if p.dtype.kind != "f":
        raise RuntimeError(
            f"multinomial only supports floating-point dtypes for input, got {p.dtype}"
        )
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    rows = p.reshape(-1, p.shape[-1]).astype(np.float64)
    if not np.all(np.isfinite(rows)) or np.any(rows < 0):
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    rng = _numpy_rng(generator)
    out = np.empty((rows.shape[0], num_samples), dtype=np.int64)
    for i, row in enumerate(rows):
        total = row.sum()
        if total <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if not replacement and num_samples > np.count_nonzero(row):
            raise RuntimeError(
                "cannot sample n_sample > prob_dist.size(-1) samples without replacement"
            )
        out[i] = rng.choice(row.size, size=num_samples, replace=replacement, p=row / total)
    return _finish(
        out.reshape(p.shape[:-1] + (num_samples,)), False, t.device if t.device != "cpu" else None
    )


def randperm(n: int, *, generator: Any = None, dtype: Any = None) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    _random_allowed("randperm")
    perm = _numpy_rng(generator).permutation(n)
    return _finish(perm.astype(_dtype(dtype, int64)), False, None)


def _like(x: Any, dtype: Any, device: Any = None) -> tuple:
    """(shape, dtype, device) of a `*_like` result: the input's, unless given (PyTorch's)."""
    if device is None and isinstance(x, Tensor) and x.device != "cpu":
        device = x.device
    return tuple(x.shape), (x.dtype if dtype is None else np.dtype(dtype)), device


def zeros_like(
    input: Any,  # noqa: A002
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    shape, dt, device = _like(input, dtype, device)
    return _finish(np.zeros(shape, dt), requires_grad, device)


def ones_like(
    input: Any,  # noqa: A002
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    shape, dt, device = _like(input, dtype, device)
    return _finish(np.ones(shape, dt), requires_grad, device)


def empty_like(
    input: Any,  # noqa: A002
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    shape, dt, device = _like(input, dtype, device)
    return _finish(np.empty(shape, dt), requires_grad, device)


def full_like(
    input: Any,
    fill_value: Any,
    dtype: Any = None,
    requires_grad: bool = False,  # noqa: A002
    device: Any = None,
) -> Tensor:
    shape, dt, device = _like(input, dtype, device)
    return _finish(np.full(shape, fill_value, dt), requires_grad, device)


def rand_like(
    input: Any,  # noqa: A002
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    shape, dt, device = _like(input, dtype, device)
    return rand(*shape, dtype=dt, device=device, requires_grad=requires_grad)


def randn_like(
    input: Any,  # noqa: A002
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    shape, dt, device = _like(input, dtype, device)
    return randn(*shape, dtype=dt, device=device, requires_grad=requires_grad)


__all__ = [
    name
    for name, value in list(globals().items())
    if not name.startswith("_")
    and (
        callable(value)
        and getattr(value, "__module__", None) == __name__
        or isinstance(value, np.dtype)
    )
]
