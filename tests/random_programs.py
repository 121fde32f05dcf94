"""Random programs for hypothesis tests: compositions of elementwise ops, broadcasts,
reductions and reshapes on random shapes (`programs()` draws one, `run_program` runs it with
tracegrad ops and returns a scalar). Used by tests/trace (trace + interpret == eager) and
tests/runtime (compiled forward + backward == eager)."""

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

import tracegrad as tg

UNARY = {
    "tanh": lambda a: a.tanh(),
    "sin": lambda a: a.sin(),
    "sigmoid": lambda a: a.sigmoid(),
    "exp_small": lambda a: (a * 0.3).exp(),
    "softplus": lambda a: (a.exp() + 1).log(),
    "square": lambda a: a * a,
    "relu": lambda a: a.relu(),
    "neg": lambda a: -a,
    "gelu": lambda a: tg.gelu(a),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "safe_div": lambda a, b: a / (b * b + 1),
    "maximum": lambda a, b: tg.maximum(a, b),
    "where": lambda a, b: tg.where(a > b, a, b * 2),
}


@st.composite
def programs(draw: Any) -> tuple:
    """(input shapes, steps); every step names its operands by index into the values so far."""
    shapes = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=1, max_dims=3, min_side=1, max_side=3
        )
    )
    values = list(shapes.input_shapes)
    steps = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "reshape", "scalar"]))
        i = draw(st.integers(0, len(values) - 1))
        shape = values[i]
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(sorted(UNARY))), i))
        elif kind == "scalar":
            steps.append(
                (
                    "scalar",
                    draw(st.sampled_from(["add", "mul"])),
                    i,
                    draw(st.floats(-2, 2, width=32)),
                )
            )
        elif kind == "binary":
            partners = [j for j, s in enumerate(values) if broadcasts(s, shape)]
            j = draw(st.sampled_from(partners))
            steps.append(("binary", draw(st.sampled_from(sorted(BINARY))), i, j))
            shape = np.broadcast_shapes(shape, values[j])
        elif kind == "reduce":
            if not shape:
                continue
            dim = draw(st.integers(0, len(shape) - 1))
            keep = draw(st.booleans())
            op = draw(st.sampled_from(["sum", "mean", "amax"]))
            steps.append(("reduce", op, i, dim, keep))
            shape = (
                tuple(1 if d == dim else s for d, s in enumerate(shape))
                if keep
                else tuple(s for d, s in enumerate(shape) if d != dim)
            )
        else:
            steps.append(("reshape", "flatten", i))
            shape = (int(np.prod(shape)),)
        values.append(tuple(shape))
    return tuple(shapes.input_shapes), steps


def broadcasts(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def run_program(steps: list, x: Any, y: Any) -> Any:
    values = [x, y]
    for step in steps:
        kind, name, i = step[:3]
        a = values[i]
        if kind == "unary":
            values.append(UNARY[name](a))
        elif kind == "scalar":
            values.append(a + step[3] if name == "add" else a * step[3])
        elif kind == "binary":
            values.append(BINARY[name](a, values[step[3]]))
        elif kind == "reduce":
            dim, keep = step[3], step[4]
            if name == "amax":
                values.append(a.amax(dim, keepdim=keep))
            else:
                values.append(getattr(a, name)(dim, keepdim=keep))
        else:
            values.append(a.reshape(-1))
    total = values[0].sum() * 0
    for v in values:
        total = total + (v * v).sum()
    return total
