"""The reference interpreter: runs a tape with the op table's numpy forwards.

It is the oracle that compiled code is tested against, and the executor `tg.jit` uses with
`TRACEGRAD_EXECUTOR=interpreter` (runtime/executor.py); by default tapes run compiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def interpret(tape: Any, args: Sequence[np.ndarray], captured: Sequence[np.ndarray]) -> tuple:
    """Evaluate `tape` on input arrays; returns (outputs, state write values)."""
    env: dict[int, Any] = {}
    for v, a in zip(tape.args, args):
        env[id(v)] = a
    for v, a in zip(tape.captured, captured):
        env[id(v)] = a

    def read(x: Any) -> Any:
        return env[id(x)] if hasattr(x, "aval") else x

    for e in tape.eqns:
        out = e.op.forward(*[read(x) for x in e.inputs], **e.params)
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        if out.dtype != e.out.dtype:
            out = out.astype(e.out.dtype)
        env[id(e.out)] = out
    outputs = tuple(np.asarray(read(x)) for x in tape.outputs)
    writes = tuple(None if w.value is None else np.asarray(read(w.value)) for w in tape.writes)
    return outputs, writes
