"""Grad mode: whether ops record a backward graph. Thread-local, as in PyTorch."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class _State(threading.local):
    enabled = True


state = _State()


def is_grad_enabled() -> bool:
    """Whether operations are recorded for autograd now.

    >>> import tracegrad as tg
    >>> with tg.no_grad():
    ...     tg.is_grad_enabled()
    False
    """
    return state.enabled


class _GradMode:
    """A context manager that is also a decorator (`@tg.no_grad()` and `@tg.no_grad`)."""

    mode = True

    def __new__(cls, func: Callable | None = None) -> Any:
        self = super().__new__(cls)
        if func is not None and callable(func):  # used as @no_grad without parentheses
            return self(func)
        return self

    def __init__(self, func: Callable | None = None) -> None:
        self.prev: list[bool] = []

    def __enter__(self) -> None:
        self.prev.append(state.enabled)
        state.enabled = self.mode

    def __exit__(self, *exc: Any) -> None:
        state.enabled = self.prev.pop()

    def __call__(self, func: Callable) -> Callable:
        mode = self.mode

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            prev = state.enabled
            state.enabled = mode
            try:
                return func(*args, **kwargs)
            finally:
                state.enabled = prev

        return wrapper


class no_grad(_GradMode):
    """Turn off recording: results have no `grad_fn`, and leaves may be changed in place.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0, 2.0], requires_grad=True)
    >>> with tg.no_grad():
    ...     w -= 0.1 * tg.ones(2)
    >>> w
    tensor([0.9000, 1.9000], requires_grad=True)
    """

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a `no_grad` region."""

    mode = True


class set_grad_enabled(_GradMode):
    """`with tg.set_grad_enabled(False): ...` sets grad mode to the given value."""

    def __new__(cls, mode: bool) -> Any:
        return object.__new__(cls)

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self.mode = bool(mode)
        self.prev = [state.enabled]
        state.enabled = self.mode  # PyTorch: takes effect at once, even without `with`

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        state.enabled = self.prev[0]
