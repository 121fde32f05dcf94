"""Printing a tape so that it reads like math::

    { lambda a:f32[2,3] ; let b:f32[2,3] = mul a 2; c:f32[2,3] = add b 1 in (c) }

Vars are named a, b, c, ... in order of definition: arguments, then captured state (after the
`;`), then equation results. Literals print as the Python numbers they are. Tapes longer than
one line print one equation per line. State writes follow the outputs: `[w <- e]`.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from ..ops.core import short_dtype
from ..ops.shape import ARRAY


def _names() -> Any:
    letters = string.ascii_lowercase
    n = 0
    while True:
        k = n
        name = ""
        while True:
            name = letters[k % 26] + name
            k = k // 26 - 1
            if k < 0:
                break
        yield name
        n += 1


def _aval(var: Any) -> str:
    return f"{short_dtype(var.dtype)}[{','.join(str(s) for s in var.shape)}]"


def _format_index(idx: tuple) -> str:
    parts = []
    for p in idx:
        if p is ARRAY:
            parts.append("#")
        elif p is None:
            parts.append("None")
        elif p is Ellipsis:
            parts.append("...")
        elif isinstance(p, slice):
            text = (
                ("" if p.start is None else str(p.start))
                + ":"
                + ("" if p.stop is None else str(p.stop))
            )
            if p.step is not None:
                text += f":{p.step}"
            parts.append(text)
        else:
            parts.append(str(p))
    return "[" + ", ".join(parts) + "]"


def format_param(key: str, value: Any) -> str:
    if key == "idx":
        return _format_index(value)
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return np.array2string(value, separator=", ").replace("\n", "")
        return f"<{short_dtype(value.dtype)}{list(value.shape)}>".replace(" ", "")
    if isinstance(value, np.dtype):
        return short_dtype(value)
    return repr(value)


def pprint(tape: Any, width: int = 100) -> str:
    names: dict[int, str] = {}
    gen = _names()

    def name(v: Any) -> str:
        if id(v) not in names:
            names[id(v)] = next(gen)
        return names[id(v)]

    def atom(x: Any) -> str:
        if hasattr(x, "aval"):
            return name(x) if id(x) in names else "?" + name(x)
        return repr(x)

    args = " ".join(f"{name(v)}:{_aval(v)}" for v in tape.args)
    captured = " ".join(f"{name(v)}:{_aval(v)}" for v in tape.captured)
    lines = []
    for e in tape.eqns:
        ins = " ".join(atom(x) for x in e.inputs)
        params = ", ".join(f"{k}={format_param(k, v)}" for k, v in e.params.items())
        head = e.op.name + (f"[{params}]" if params else "")
        lines.append(f"{name(e.out)}:{_aval(e.out)} = {head} {ins}".rstrip())
    outs = ", ".join(atom(x) for x in tape.outputs)

    def target(w: Any) -> str:
        owner = name(w.target) if w.target is not None else "<tensor>"
        return owner if w.kind.value == "data" else owner + ".grad"  # (ir.WriteKind)

    writes = ", ".join(
        f"{target(w)} <- {atom(w.value) if w.value is not None else 'None'}" for w in tape.writes
    )
    tail = f"in ({outs})" + (f" [{writes}]" if writes else "")
    head = f"{{ lambda {args} ; " + (f"{captured} " if captured else "") + "let"
    one_line = head + " " + "; ".join(lines) + (" " if lines else "") + tail + " }"
    if len(one_line) <= width:
        return one_line
    body = "\n".join("    " + line for line in lines)
    return f"{head}\n{body}\n  {tail} }}"
