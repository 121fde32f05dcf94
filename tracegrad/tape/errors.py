"""TracerError: what cannot be done while tracing, said with the user's file and line."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TracerError(RuntimeError):
    """An operation needed a traced tensor's value, or a traced tensor was used after its
    trace ended."""


def user_location() -> str:
    """`file:line` of the innermost frame outside tracegrad (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_PACKAGE_DIR + os.sep):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def value_needed(what: str, aval: object) -> TracerError:
    return TracerError(
        f"{user_location()}: {what} needs the value of a traced tensor ({aval}), which is not "
        "known while tg.jit traces the function: tracing records the operations once, for all "
        "values. For a choice that depends on data use tg.where(cond, a, b); if the value is "
        "really a setting (a size, a flag), pass it as a static argument "
        "(tg.jit(f, static_argnums=...)); or move this code outside the jitted function."
    )


def escaped(aval: object) -> TracerError:
    return TracerError(
        f"{user_location()}: a tensor ({aval}) computed inside a jitted function was used after "
        "that function's trace ended (it was stored in a global, a closure, an object or a "
        "list). Return it from the jitted function instead, or keep such state in a Tensor that "
        "exists before the call and update it in place (x.copy_(...), x += ...)."
    )
