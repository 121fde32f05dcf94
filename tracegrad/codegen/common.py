"""What both code writers share (cpu.py for numba.njit, cuda.py for numba.cuda): the names of
a segment's values (`Naming`: local names, the shape table's rows, literal slots; or the tape's
names for display), the dtype table, the scalar lowering of an equation (`scalar_expr`, from its
`OpDef.lower`) and the comment that shows each statement's tape equation."""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops.core import short_dtype
from ..tape.ir import Var
from ..tape.printer import _names, format_param

RESERVED = {
    *("np", "math", "prange", "njit", "S", "LF", "LI", "GRAIN", "acc", "n0", "n1", "n2", "n3"),
}
CAST = {
    "float32": "np.float32",
    "float64": "np.float64",
    "int64": "np.int64",
    "int32": "np.int32",
    "bool": "np.bool_",
    "int16": "np.int16",
    "int8": "np.int8",
    "uint8": "np.uint8",
    "float16": "np.float16",
}


class Naming:
    """Names of one segment's vars, their rows in its shape table, its literal slots.

    Everything is numbered locally, in order of first appearance in the segment (its inputs,
    then each equation's result): two segments with the same structure -- the eight residual
    blocks of a ResNet, at different sizes -- get the same source and share one compiled
    function. `tape_names` maps the local names back to the tape's, for `f.source()`."""

    def __init__(
        self, vars: list[Var], tape_names: dict[int, str] | None = None, display: bool = False
    ) -> None:
        self.names: dict[int, str] = {}
        self.rows: dict[int, int] = {}
        self.grain_slot: int | None = None  # the LI slot of the parallel grain, if any
        self.vars: list[Var] = []
        # display: the tape's names and, in comments, literal values and sizes -- the text
        # `f.source()` shows. The compiled text numbers names locally and leaves values out
        # (they are runtime parameters), so that equal structures share one compiled function
        self.display = display
        gen = _names()
        for v in vars:
            if id(v) in self.names:
                continue
            name = next(gen) if not display else tape_names.get(id(v), "?")
            if keyword.iskeyword(name) or name in RESERVED or keyword.issoftkeyword(name):
                name += "0"  # generated names are letters only: no other var is called this
            self.names[id(v)] = name
            self.rows[id(v)] = len(self.vars)
            self.vars.append(v)
        self.tape_names = tape_names or {}
        self.floats: list[float] = []
        self.ints: list[int] = []

    @staticmethod
    def of_segment(
        kernels: list[Any], inputs: list[Var], tape_names: dict[int, str], display: bool = False
    ) -> Naming:
        return Naming(inputs + [e.out for k in kernels for e in k.eqns], tape_names, display)

    def legend(self) -> str:
        """`a=bq b=br ...`: the tape's name of each local name."""
        return " ".join(f"{self.names[id(v)]}={self.tape_names.get(id(v), '?')}" for v in self.vars)

    def literals(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.floats, dtype=np.float64), np.asarray(self.ints, dtype=np.int64)

    def shape_table(self) -> np.ndarray:
        rank = max([v.ndim for v in self.vars] + [1])
        table = np.ones((len(self.vars), rank), dtype=np.int64)
        for i, v in enumerate(self.vars):
            table[i, : v.ndim] = v.shape
        return table

    def literal(self, x: Any) -> str:
        # every occurrence gets its own slot: equal values must not change the source
        if isinstance(x, (bool, np.bool_)) or isinstance(x, (int, np.integer)):
            self.ints.append(int(x))
            return f"LI[{len(self.ints) - 1}]"
        self.floats.append(float(x))
        return f"LF[{len(self.floats) - 1}]"

    def array(self, v: Var) -> str:
        return self.names[id(v)]

    def scalar(self, v: Var) -> str:
        return self.names[id(v)] + "_"

    def dims(self, v: Var) -> list[str]:
        return [f"S[{self.rows[id(v)]}, {k}]" for k in range(v.ndim)]


def tape_names(tape: Any) -> dict[int, str]:
    """The tape printer's name of every var of a tape."""
    gen = _names()
    return {id(v): next(gen) for v in tape.args + tape.captured + [e.out for e in tape.eqns]}


def scalar_expr(e: Any, operands: list[str], literal: Any, fast: bool = True) -> str:
    """The op's scalar lowering (`OpDef.lower`: a template, or a function of the equation)
    with its operands filled in. `fast`: float32 math through the vectorizable CPU helpers
    (the CUDA target uses libdevice's)."""
    lower = e.op.lower
    if callable(lower):
        return lower(e, operands, literal, fast)
    return lower.format(*operands)


def cast(v: Var) -> str:
    return CAST[v.dtype.name]


def compute_dtype(e: Any) -> np.dtype:
    """The dtype the loop computes `e` in: its literals are cast to it (`OpDef.promotes`)."""
    return e.op.compute_dtype(e.inputs) if e.inputs else e.out.dtype


_ARITHMETIC = re.compile(r"[\s()+\-*/]*")


def typed(e: Any, expr: str, operands: list[str]) -> str:
    """`expr` as a value of `e.out`'s dtype: a cast, left out where the expression is
    arithmetic (+ - * / and parentheses) on operands that all have that floating dtype already
    (Numba keeps float32 * float32 in float32), so that the source reads as the math."""
    dtype = e.out.dtype
    same = dtype.kind == "f" and compute_dtype(e) == dtype
    same = same and all(x.dtype == dtype for x in e.inputs if isinstance(x, Var))
    rest = expr
    for op in sorted(operands, key=len, reverse=True):
        rest = rest.replace(op, " ")
    arithmetic = _ARITHMETIC.fullmatch(rest) and "**" not in rest and "//" not in rest
    if not (same and arithmetic):
        return f"{cast(e.out)}({expr})"
    if expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
        return expr[1:-1]
    return expr


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


SIZE_PARAMS = frozenset(("shape", "value", "min", "max"))


def eqn_comment(naming: Naming, e: Any, operands: list[str] | None = None) -> str:
    """`b:f32[_,_] = mul a LI[0]`: the tape equation, written without sizes or literal values
    (those are runtime parameters), so that the comment does not change the source; for
    display (`Naming.display`) as the tape prints it: `b:f32[2,3] = mul a 2.0`."""
    atoms = []
    for i, x in enumerate(e.inputs):
        if isinstance(x, Var):
            atoms.append(naming.names[id(x)])
        elif naming.display:
            atoms.append(repr(x))
        else:
            atoms.append(operands[i] if operands else "<literal>")
    params = ", ".join(
        f"{k}={format_param(k, v)}"
        for k, v in e.params.items()
        if naming.display or k not in SIZE_PARAMS
    )
    head = e.op.name + (f"[{params}]" if params else "")
    dims = [str(d) if naming.display else "_" for d in e.out.shape]
    aval = f"{short_dtype(e.out.dtype)}[{','.join(dims)}]"
    return f"{naming.names[id(e.out)]}:{aval} = {head} {' '.join(atoms)}".rstrip()


def fold(reduction: Any, acc: str, x: str) -> str:
    """The statement folding `x` into the accumulator `acc` (`OpDef.reduction.fold`, else its
    `combine`). Not for a scalar accumulator of a `prange` loop: Numba only reduces the bare
    `combine` there (the CPU writer counts NaNs beside a max)."""
    return (reduction.fold or reduction.combine).format(acc=acc, x=x)


def python_step_label(e: Any) -> str:
    """Where a step outside the compiled segments runs (`f.source()` and the driver's comment)."""
    return "numpy (BLAS)" if e.op.uses_blas else "Python (numpy forward)"


# buffers smaller than this are plain np.empty; larger ones come from the executable's pool
# (page faults on a fresh large array cost more than a memory-bound loop: runtime/executor.py)
POOLED_BYTES = 1 << 16


@dataclass(eq=False)
class SegmentCode:
    """One compiled segment as written: the source compiled (local names: its hash keys the
    caches, so equal segments of different tapes share machine code) and, for people, the
    same code in the tape's names (`display()`)."""

    kernels: list
    inputs: list[Var]
    outputs: list[Var]
    buffers: list[Var]  # arrays the segment's loops write, passed in by the driver
    donated: list[int | None]  # per buffer: id of the captured var whose array it may be
    naming: Naming
    source: str
    display: Callable[[], str]
    S: np.ndarray = field(init=False)  # the shape table (sizes are never in the source)
    LF: np.ndarray = field(init=False)  # literal slots, floating and integer
    LI: np.ndarray = field(init=False)
    # LI with the parallel grain out of reach (every loop serial), None without parallel loops
    LI_serial: np.ndarray | None = field(init=False)
    buffer_plan: list = field(init=False)  # per buffer: (shape, dtype, from the pool?)

    def __post_init__(self) -> None:
        self.S = self.naming.shape_table()
        self.LF, self.LI = self.naming.literals()
        self.LI_serial = None
        if self.naming.grain_slot is not None:
            self.LI_serial = self.LI.copy()
            self.LI_serial[self.naming.grain_slot] = np.iinfo(np.int64).max
        self.buffer_plan = [
            (v.shape, v.dtype, v.dtype.itemsize * int(np.prod(v.shape)) >= POOLED_BYTES)
            for v in self.buffers
        ]
