"""`tg.jit(module)`: the module compiled, as `torch.compile(model)` returns it.

    >>> import tracegrad as tg
    >>> model = tg.nn.Linear(3, 2)
    >>> cm = tg.jit(model)
    >>> cm(tg.ones(4, 3)).grad_fn.name()
    'CompiledFunctionBackward'
    >>> list(cm.state_dict()) == list(model.state_dict()), cm.weight is model.weight
    (True, True)

Calling it runs the module through one `tg.jit` function (a compiled forward, and for outputs
that require grad a compiled backward behind a `CompiledFunctionBackward` node: used in an
ordinary loop, `loss.backward()` runs it). Everything else is the module's own: its
parameters and buffers (the same objects, under the same names: `state_dict()` loads into the
plain module and back, unlike PyTorch's `_orig_mod.` prefix), `train()`/`eval()` (guarded: the
next call retraces once per mode), `to()`, attribute access. BatchNorm's running statistics are
state the compiled forward writes.
"""

from __future__ import annotations

from typing import Any

from ..runtime.jit import JitFunction
from .module import Module


class CompiledModule(Module):
    """A module whose calls run compiled. `tg.jit(module)` makes one; `_orig_mod` is the
    module (PyTorch's name)."""

    def __init__(self, module: Module, **options: Any) -> None:
        # no Module.__init__: `training` and the stores are the wrapped module's
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_jit", JitFunction(module, **options))
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})

    @property
    def training(self) -> bool:  # type: ignore[override]
        return self._orig_mod.training

    @property
    def stats(self) -> dict:
        """The compiled function's counters (`traces`, `compiles`, ...; see tg.jit)."""
        return self._jit.stats

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._jit(*args, **kwargs)

    forward = __call__

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_orig_mod"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._orig_mod, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._orig_mod, name)

    def __dir__(self) -> list:
        return sorted(set(dir(self._orig_mod)) | {"_orig_mod", "stats", "wait"})

    # the module tree is the wrapped module's: parameters(), buffers(), state_dict(), train(),
    # zero_grad(), to() and load_state_dict() all walk it through these
    def named_modules(self, memo: Any = None, prefix: str = "", remove_duplicate: bool = True):
        return self._orig_mod.named_modules(memo, prefix, remove_duplicate)

    def named_children(self) -> Any:
        return self._orig_mod.named_children()

    def apply(self, fn: Any) -> Module:
        self._orig_mod.apply(fn)
        return self

    def train(self, mode: bool = True) -> Module:
        self._orig_mod.train(mode)
        return self

    def tape(self, *args: Any, **kwargs: Any) -> Any:
        """The tape a call with these arguments runs (forward program when it differentiates)."""
        return self._jit.tape(*args, **kwargs)

    def source(self, *args: Any, **kwargs: Any) -> str:
        return self._jit.source(*args, **kwargs)

    def clear_cache(self) -> None:
        self._jit.clear_cache()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background compiles (see `tg.jit`); whether they finished."""
        return self._jit.wait(timeout)

    def __repr__(self) -> str:
        return f"CompiledModule({self._orig_mod!r})"


def _tg_jit(module: Module, **options: Any) -> CompiledModule:
    return CompiledModule(module, **options)


# what `tg.jit(module)` calls (runtime/jit.py finds it on the object: runtime may not import nn)
Module.__tg_jit__ = _tg_jit

__all__ = ["CompiledModule"]
