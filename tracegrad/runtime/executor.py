"""Stage 4's seam: turning a tape into something that runs.

`build_executable(tape, device)` returns a callable `(arg_arrays, captured_arrays) ->
(outputs, write_values)`. Today it is the reference interpreter; the Numba backends plug in
here (same signature), so the cache, the state write-back and the tests do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..tape.interpret import interpret


class InterpreterExecutable:
    """Runs a tape with the op table's numpy forwards."""

    kind = "interpreter"

    def __init__(self, tape: Any) -> None:
        self.tape = tape

    def __call__(self, args: Sequence[np.ndarray], captured: Sequence[np.ndarray]) -> tuple:
        outputs, writes = interpret(self.tape, args, captured)
        # results own their memory: an output must not alias an input or a captured tensor
        inputs = [*args, *captured]
        outputs = tuple(_owned(o, inputs) for o in outputs)
        writes = tuple(None if w is None else _owned(w, inputs) for w in writes)
        return outputs, writes

    def source(self) -> str:
        return (
            "# executed by the reference interpreter (tracegrad.tape.interpret); no generated "
            "source yet\n" + str(self.tape)
        )


def _owned(a: np.ndarray, inputs: list) -> np.ndarray:
    if any(np.may_share_memory(a, i) for i in inputs if isinstance(i, np.ndarray)):
        return np.array(a, copy=True)
    return a


def build_executable(tape: Any, device: str) -> Callable:
    if device != "cpu":
        raise ValueError(f"tg.jit: device {device!r} is not available; use device='cpu'")
    return InterpreterExecutable(tape)
