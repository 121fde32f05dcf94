"""The type checker: a tape is well formed when every var is defined once before it is used,
every equation's output aval is what its op's shape rule gives, and every literal is a Python
number. Runs in tests and, with TRACEGRAD_DEBUG, after every trace."""

from __future__ import annotations

from typing import Any

from ..ops.core import Aval, is_scalar


class TapeTypeError(TypeError):
    """A malformed tape: the message names the equation."""


def check(tape: Any) -> None:
    defined: set[int] = set()
    for v in tape.args + tape.captured:
        if id(v) in defined:
            raise TapeTypeError(f"input var {v!r} is listed twice")
        defined.add(id(v))
    for n, e in enumerate(tape.eqns):
        avals = []
        for x in e.inputs:
            if hasattr(x, "aval"):
                if id(x) not in defined:
                    raise TapeTypeError(f"eqn {n} ({e.op.name}) uses a var before it is defined")
                avals.append(x.aval)
            elif is_scalar(x):
                avals.append(x)
            else:
                raise TapeTypeError(
                    f"eqn {n} ({e.op.name}) has a literal of type {type(x).__name__}; literals "
                    "must be Python numbers"
                )
        expected = e.op.abstract(*avals, **e.params)
        if Aval(e.out.shape, e.out.dtype) != expected:
            raise TapeTypeError(
                f"eqn {n} ({e.op.name}) defines {e.out.aval!r} but its shape rule gives "
                f"{expected!r}"
            )
        if id(e.out) in defined:
            raise TapeTypeError(f"eqn {n} ({e.op.name}) redefines a var")
        defined.add(id(e.out))
    for x in list(tape.outputs) + [w.value for w in tape.writes]:
        if hasattr(x, "aval") and id(x) not in defined:
            raise TapeTypeError("an output or state write uses an undefined var")
