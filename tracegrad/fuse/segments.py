"""Stage 2b: kernels -> segments. Both executors (runtime/) compile each run of kernels that
their target compiles as one segment (one generated function) and run the other kernels as
steps between segments; this module decides the runs and what each segment reads and leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..tape.ir import Var
from .partition import KernelKind


def group_segments(kernels: list, apart: Callable[[Any], bool]) -> list:
    """`kernels` in order, runs of compiled kernels as lists (segments) and every kernel for
    which `apart(k)` holds on its own (a step between segments)."""
    groups: list[Any] = []
    for k in kernels:
        if apart(k):
            groups.append(k)
        elif groups and isinstance(groups[-1], list):
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def later_uses_of(tape: Any, groups: list) -> list[set[int]]:
    """For each group (a list of kernels: a segment; or one Python step): the vars that the
    groups after it, the tape's outputs or its state writes read."""
    needed = {id(x) for x in tape.outputs if isinstance(x, Var)}
    needed |= {id(w.value) for w in tape.writes if isinstance(w.value, Var)}
    result = []
    for g in reversed(groups):
        result.append(set(needed))
        for k in g if isinstance(g, list) else [g]:
            # a loop that computes a value itself (partition rule 8) does not need it from
            # before
            own = {id(e.out) for e in k.eqns}
            for e in k.eqns:
                needed.update(id(x) for x in e.inputs if isinstance(x, Var) and id(x) not in own)
    result.reverse()
    return result


def segment_io(kernels: list, used_later: set[int]) -> tuple[list[Var], list[Var]]:
    """A segment's inputs (vars its kernels read and do not make, in order of first use) and
    outputs (vars it makes that something after it reads).

    A kernel reads a var from outside when it does not compute it itself and no kernel before
    it in the segment made it visible: a loop's body values are visible after it only when it
    writes them (partition rule 6); a loop that recomputes a value (rule 8) keeps its copy."""
    visible: set[int] = set()
    inputs: dict[int, Var] = {}
    for k in kernels:
        own = {id(e.out) for e in k.eqns}
        for e in k.eqns:
            for x in e.inputs:
                if isinstance(x, Var) and id(x) not in own and id(x) not in visible:
                    inputs.setdefault(id(x), x)
        visible |= {id(v) for v in visible_after(k)}
    outputs: dict[int, Var] = {}
    for k in kernels:
        left = {id(v) for v in visible_after(k)}
        for e in k.eqns:
            if id(e.out) in left and id(e.out) in used_later:
                outputs.setdefault(id(e.out), e.out)
    return list(inputs.values()), list(outputs.values())


def visible_after(k: Any) -> list[Var]:
    """The values kernel `k` leaves for the kernels after it."""
    if k.kind is not KernelKind.LOOP:
        return [k.eqn.out]
    return [e.out for e in k.prologue + k.reductions + k.epilogue] + list(k.materialize)


def fresh_values(kernels: list, returns_view: Callable[[Any], bool]) -> set[int]:
    """ids of the vars whose arrays are new at every call (loop results, matmul products, and
    views of those): they cannot alias an argument, so results need no aliasing check.
    `returns_view(k)`: whether the backend's code for kernel k may return a view of its first
    input (numpy's reshape, transpose, basic indexing on the CPU)."""
    fresh: set[int] = set()
    for k in kernels:
        if not returns_view(k):
            fresh.update(id(e.out) for e in k.eqns)
        elif id(k.eqn.inputs[0]) in fresh:
            fresh.add(id(k.eqn.out))  # a reshape, permute or slice of a new array
    return fresh
