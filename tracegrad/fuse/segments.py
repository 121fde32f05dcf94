"""Stage 2b: kernels -> segments. Both executors (runtime/) compile each run of kernels that
their target compiles as one segment (one generated function) and run the other kernels as
steps between segments; this module decides the runs and what each segment reads and leaves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..tape.ir import Var, WriteKind
from .partition import KernelKind, may_return_view

# The most equations one compiled segment holds (TRACEGRAD_MAX_SEGMENT_EQNS, read at import;
# it changes how code is cut, never a result). Numba's compile
# time grows faster than the function: a GPT step's optimizer update and clipping, 1779 lines
# in one function, took 62 s of a 118 s compile. Segments are cut between kernels (any cut is
# valid: values pass between segments as arrays or returned numbers, as they do around a
# Python step). The GPT step's cold compile, measured side by side: no cap 114 s, 64 equations
# 89 s, 32 equations 57 s (with the other changes of this commit).
MAX_SEGMENT_EQNS = int(os.environ.get("TRACEGRAD_MAX_SEGMENT_EQNS", "32"))


def group_segments(kernels: list, apart: Callable[[Any], bool]) -> list:
    """`kernels` in order, runs of compiled kernels as lists (segments, each of at most
    MAX_SEGMENT_EQNS equations unless one kernel alone has more) and every kernel for which
    `apart(k)` holds on its own (a step between segments)."""
    groups: list[Any] = []
    size = 0
    for k in kernels:
        n = len(k.eqns)
        if apart(k):
            groups.append(k)
        elif groups and isinstance(groups[-1], list) and size + n <= MAX_SEGMENT_EQNS:
            groups[-1].append(k)
            size += n
        else:
            groups.append([k])
            size = n
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


def donations(tape: Any, kernels: list) -> dict[int, int]:
    """State writes computed in place: {id of the new value's var: id of the captured var}.

    A parameter update `p_new = p - lr * g` is a loop that reads p[i] and writes
    p_new[i]; when nothing after that loop reads the old p, the loop can write p_new into
    p's own array. That saves a buffer (page faults: a ResNet has 11.7M parameters) and the
    copy back after the call, as JAX's buffer donation does. Conditions, all checked here
    once: a data write of a value that a loop materializes, of the captured var's shape and
    dtype, that the loop space equals (every read of the old value at the same index), not
    returned as an output, and the old value not read by any later kernel. The call checks
    the array itself (contiguous, writeable, not sharing memory with an argument)."""
    position: dict[int, int] = {}
    reads: dict[int, list[int]] = {}
    # a call or Python step may return a view of its input (numpy's reshape, transpose,
    # broadcast_to, basic indexing): a read of the view is a read of the array under it
    alias_of: dict[int, int] = {}
    for i, k in enumerate(kernels):
        for e in k.eqns:
            position[id(e.out)] = i
            for x in e.inputs:
                if isinstance(x, Var):
                    root = alias_of.get(id(x), id(x))
                    reads.setdefault(id(x), []).append(i)
                    if root != id(x):
                        reads.setdefault(root, []).append(i)
        if may_return_view(k):
            x = k.eqn.inputs[0]
            if isinstance(x, Var):
                alias_of[id(k.eqn.out)] = alias_of.get(id(x), id(x))
    # read after the last kernel: the tape's outputs and the values of state writes
    outputs = {id(x) for x in tape.outputs if isinstance(x, Var)}
    outputs |= {id(w.value) for w in tape.writes if isinstance(w.value, Var)}
    outputs |= {alias_of[v] for v in list(outputs) if v in alias_of}  # views returned
    targets: dict[int, int] = {}
    for w in tape.writes:
        if w.kind is WriteKind.DATA and isinstance(w.target, Var):
            targets[id(w.target)] = targets.get(id(w.target), 0) + 1
    donations: dict[int, int] = {}
    for w in tape.writes:
        v, old = w.value, w.target
        if w.kind is not WriteKind.DATA or not isinstance(v, Var) or not isinstance(old, Var):
            continue
        i = position.get(id(v))
        if i is None or targets[id(old)] != 1 or v.aval != old.aval:
            continue
        if id(old) in outputs or id(v) in {id(x) for x in tape.outputs}:
            continue
        k = kernels[i]
        if k.kind is not KernelKind.LOOP or not k.space or tuple(k.space) != tuple(old.shape):
            continue
        if id(v) not in {id(m) for m in k.materialize}:
            continue
        if any(r > i for r in reads.get(id(old), [])):
            continue  # a later kernel reads the old value
        # inside the loop, the store of v[i] must come after every read of old[i]: body
        # statements run in order, accumulations after the whole body (in-place updates
        # always satisfy this today; a pass that folded `p.copy_(new)` into `new` would not)
        order = [id(e.out) for e in k.body]
        vpos = order.index(id(v))
        late = [e for e in k.body[vpos + 1 :] + k.reductions if any(x is old for x in e.inputs)]
        if not late:
            donations[id(v)] = id(old)
    return donations
