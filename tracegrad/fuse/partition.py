"""Stage 2: Tape -> kernels (loop nests, library calls, and Python steps).

Before (value and gradient of `mean((2x+1)**2)`, optimized tape)::

    b = mul a 2;  c = add b 1;  d = pow c 2;  e = mean d;  f = const 1.;  g = div f 6.0
    h = expand g;  i = mul c 2;  j = mul h i;  k = mul j 2

After: ONE loop kernel over the shape of `a`::

    loop over (2,3):  prologue g = f / 6.0
                      body b, c, d, h, i, j, k      reduction e += d     outputs: e, k

The rules, applied in tape order (each is a comment beside the code that applies it below):

1. elementwise ops (and `expand`, a broadcast read) fuse into the current loop when their output
   has the loop's shape: producer-consumer fusion, and equations over the same iteration space
   side by side (several outputs from one pass);
2. a reduction of a value of the loop's shape joins the loop as an accumulator, but ends the loop
   body for its consumers: what needs the reduced value runs after the loop (0-d epilogue) or in
   a later loop;
3. 0-d equations whose inputs are ready before the loop are hoisted into its prologue;
4. matmul, reshape and permute are library calls between loops (BLAS via `np.dot`);
5. every other op runs as a Python step with its numpy forward, between compiled segments;
6. a value used outside the kernel that computes it is materialized once (written to memory);
   values used only inside their loop stay in registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..tape.ir import Eqn, Tape, Var

REDUCTIONS = frozenset(("sum", "mean", "amax", "amin", "prod"))
CALLS = frozenset(("matmul", "reshape", "permute"))


def is_elementwise(e: Eqn) -> bool:
    return (e.op.kind == "elementwise" and e.op.lower is not None) or e.op.name == "expand"


def is_reduction(e: Eqn) -> bool:
    if e.op.name not in REDUCTIONS or not e.params["dims"] or e.inputs[0].ndim == 0:
        return False
    # max/min accumulators start at -inf/+inf: floating point only
    return e.op.name in ("sum", "mean", "prod") or e.inputs[0].dtype.kind == "f"


def is_call(e: Eqn) -> bool:
    if e.op.name == "matmul":
        x, y = e.inputs
        return x.ndim <= 2 and y.ndim <= 2 and x.dtype.kind == "f" and min(x.size, y.size) > 0
    return e.op.name in CALLS


@dataclass(eq=False)
class LoopKernel:
    """A loop nest over `space`: prologue scalars, body (elementwise values of shape `space`),
    reductions (accumulators), epilogue scalars (after the loop)."""

    space: tuple
    prologue: list[Eqn] = field(default_factory=list)
    body: list[Eqn] = field(default_factory=list)
    reductions: list[Eqn] = field(default_factory=list)
    epilogue: list[Eqn] = field(default_factory=list)
    materialize: list[Var] = field(default_factory=list)  # body values written to memory

    kind = "loop"

    @property
    def eqns(self) -> list[Eqn]:
        return self.prologue + self.body + self.reductions + self.epilogue

    def space_var(self) -> Var:
        """A var whose runtime shape is the loop's iteration space."""
        for e in self.body:
            return e.out
        return self.reductions[0].inputs[0]


@dataclass(eq=False)
class CallKernel:
    eqn: Eqn
    kind = "call"

    @property
    def eqns(self) -> list[Eqn]:
        return [self.eqn]


@dataclass(eq=False)
class PythonStep:
    eqn: Eqn
    kind = "python"

    @property
    def eqns(self) -> list[Eqn]:
        return [self.eqn]


def partition(tape: Tape) -> list[Any]:
    """The kernels of `tape`, in execution order."""
    kernels: list[Any] = []
    cur: LoopKernel | None = None
    # where each var defined by the current loop lives: "body", "pro", "red", "epi"
    role: dict[int, str] = {}

    def ready_before(x: Any) -> bool:
        # a literal, or a value made before the current loop started
        return not isinstance(x, Var) or id(x) not in role

    for e in tape.eqns:
        var_ins = [x for x in e.inputs if isinstance(x, Var)]
        if e.op.name == "const":
            continue  # constants are inputs of the executable, computed once
        if is_elementwise(e) and e.out.ndim == 0:
            # rule 3: a 0-d equation goes into the prologue when its inputs are ready before
            # the loop, else into the epilogue (it needs a reduced value: rule 2)
            if cur is not None and all(ready_before(x) or role[id(x)] == "pro" for x in var_ins):
                cur.prologue.append(e)
                role[id(e.out)] = "pro"
                continue
            if cur is not None and all(
                ready_before(x) or role[id(x)] in ("pro", "red", "epi") for x in var_ins
            ):
                cur.epilogue.append(e)
                role[id(e.out)] = "epi"
                continue
            cur, role = LoopKernel(space=()), {}
            kernels.append(cur)
            cur.prologue.append(e)
            role[id(e.out)] = "pro"
            continue
        if is_elementwise(e):
            # rule 1: join the loop when the output has its shape and every input is ready
            # before it, a prologue scalar, or a body value (not a reduced value: rule 2)
            joins = (
                cur is not None
                and e.out.shape == cur.space
                and all(ready_before(x) or role[id(x)] in ("pro", "body") for x in var_ins)
            )
            if not joins:
                cur, role = LoopKernel(space=e.out.shape), {}
                kernels.append(cur)
            cur.body.append(e)
            role[id(e.out)] = "body"
            continue
        if is_reduction(e):
            # rule 2: a reduction over the loop's space joins it as an accumulator
            x = e.inputs[0]
            joins = (
                cur is not None
                and x.shape == cur.space
                and (ready_before(x) or role[id(x)] == "body")
            )
            if not joins:
                cur, role = LoopKernel(space=x.shape), {}
                kernels.append(cur)
            cur.reductions.append(e)
            role[id(e.out)] = "red"
            continue
        # rules 4 and 5: library calls and Python steps end the current loop
        kernels.append(CallKernel(e) if is_call(e) else PythonStep(e))
        cur, role = None, {}

    _mark_materialized(tape, kernels)
    return kernels


def _mark_materialized(tape: Tape, kernels: list[Any]) -> None:
    """Rule 6: a body value is written to memory only when something outside its loop reads
    it (a later kernel, an output, a state write)."""
    owner: dict[int, Any] = {}
    for k in kernels:
        if k.kind == "loop":
            for e in k.body:
                owner[id(e.out)] = k
    needed: set[int] = set()
    for k in kernels:
        for e in k.eqns:
            for x in e.inputs:
                if isinstance(x, Var) and id(x) in owner and owner[id(x)] is not k:
                    needed.add(id(x))
    for x in list(tape.outputs) + [w.value for w in tape.writes]:
        if isinstance(x, Var) and id(x) in owner:
            needed.add(id(x))
    for k in kernels:
        if k.kind == "loop":
            k.materialize = [e.out for e in k.body if id(e.out) in needed]


def describe(kernels: list[Any]) -> str:
    """One line per kernel (TRACEGRAD_DEBUG=2)."""
    lines = []
    for n, k in enumerate(kernels):
        if k.kind == "loop":
            lines.append(
                f"kernel {n}: loop over {k.space}: {len(k.prologue)} prologue, "
                f"{len(k.body)} body, {len(k.reductions)} reductions, {len(k.epilogue)} "
                f"epilogue; writes {len(k.materialize)} arrays"
            )
        else:
            lines.append(f"kernel {n}: {k.kind} {k.eqn.op.name}")
    return "\n".join(lines)
