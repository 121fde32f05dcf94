"""`njit` and `intrinsic` that import Numba at the first call, not at `import tracegrad`.

Numba and llvmlite take about 0.3 s to import, half of `import tracegrad`; a script that never
runs a Numba kernel (or runs one only later) should not pay that up front. The eager kernels of
`ops/` are therefore declared with this module's decorators: each returns a `Lazy` stand-in
that makes the real dispatcher on its first call. The first call makes *every* pending kernel,
so that a kernel calling another one (`take_rows` -> `_row`, `exp_array` -> `exp_f32`) finds a
real dispatcher in its module's globals when Numba types it, and every tracegrad module's
global that named a stand-in (`from .kernels import exp_array` included) is rebound to its
dispatcher, so eager ops call Numba directly as before. A stand-in held anywhere else (a user's
own `from tracegrad.ops.kernels import ...` made earlier) forwards: one Python call, ~0.2 us.
Generated code imports the helpers through `codegen/numba_helpers.py`, which makes them first
and re-exports the dispatchers.

Numba's own caching is unchanged: `cache=True` keys on the function's file and line.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

_pending: list[Lazy] = []
_lock = threading.RLock()


class Lazy:
    """A Numba kernel not made yet: calling it (or reading a dispatcher attribute) makes it."""

    __slots__ = ("py_func", "_make", "real", "module", "__name__", "__qualname__")

    def __init__(self, py_func: Callable, make: Callable[[Callable], Any]) -> None:
        self.py_func = py_func
        self._make = make
        self.real: Any = None
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.module = py_func.__module__
        with _lock:
            _pending.append(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        real = self.real
        if real is None:
            materialize()
            real = self.real
        return real(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # signatures, stats, py_func's siblings
        materialize()
        return getattr(self.real, name)

    def __repr__(self) -> str:
        state = "made" if self.real is not None else "not made yet"
        return f"<tracegrad lazy Numba kernel {self.module}.{self.__qualname__} ({state})>"


def materialize() -> None:
    """Make every pending kernel (imports Numba) and rebind the module globals that named them."""
    with _lock:
        if not _pending:
            return
        made = list(_pending)
        for lazy in made:
            lazy.real = lazy._make(lazy.py_func)
        # every tracegrad module's global that names a stand-in now names the dispatcher (the
        # defining module's, and `from .kernels import exp_array` elsewhere): calls go straight
        # to Numba; a stand-in held anywhere else forwards
        real = {id(lazy): lazy.real for lazy in made}
        for name, module in list(sys.modules.items()):
            if name != "tracegrad" and not name.startswith("tracegrad."):
                continue
            namespace = getattr(module, "__dict__", None) or {}
            for key, value in list(namespace.items()):
                if type(value) is Lazy and id(value) in real:
                    namespace[key] = real[id(value)]
        del _pending[: len(made)]


def njit(*args: Any, **options: Any) -> Any:
    """`numba.njit`, applied at the first call: `@njit` or `@njit(cache=True, ...)`."""

    def make(fn: Callable) -> Any:
        import numba

        return numba.njit(**options)(fn)

    if args and callable(args[0]) and not options:
        return Lazy(args[0], make)
    return lambda fn: Lazy(fn, make)


def intrinsic(fn: Callable) -> Lazy:
    """`numba.extending.intrinsic`, applied when the kernels are made."""

    def make(f: Callable) -> Any:
        from numba.extending import intrinsic as numba_intrinsic

        return numba_intrinsic(f)

    return Lazy(fn, make)
