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
4. ops with an `OpDef.call` that covers the equation are library calls between loops:
   reshape, permute, basic indexing and its adjoint, rows picked by an index tensor (an
   embedding) and their gradient, cat, index checks, compiled into the segment; matmul runs
   in numpy's BLAS between compiled segments (runtime/executor.py says why);
5. every other op runs as a Python step with its numpy forward, between compiled segments;
6. a value used outside the kernel that computes it is materialized once (written to memory);
   values used only inside their loop stay in registers;
7. a kernel that has to be new (a loop over a space no legal loop has, a library call, a
   Python step) goes right after the kernel that makes its last input, not at the end: the
   labels of a loss are checked and compared before the loops over the logits, so the
   comparison fuses into them;
8. a cheap elementwise value computed from smaller (broadcast) arrays -- a one-hot mask
   `arange(C) == label`, a where of it and a per-row scalar -- is recomputed in the later
   loops that read it instead of being written by its loop and read back: a few
   instructions per element instead of a store and a load of a whole (B, C) array;
9. a kernel that reads a captured value (or a view of it) after the loop computing that
   value's replacement -- a conv's input gradient, which reads the weight, placed after the
   weight's SGD update by rule 7 -- moves before that loop when it does not depend on it, with
   what it needs from in between: the update can then be written into the old array
   (executor._donations);
10. a collective op (`OpDef.kind == "collective"`: DistributedDataParallel's all-reduce start)
   and the library calls that make its input keep their place: kernels that rule 7 would put
   at the same point later go after them, so that the all-reduce of a bucket starts right
   after its last gradient and overlaps the rest of the backward.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from ..tape.ir import Eqn, Tape, Var, WriteKind


class KernelKind(enum.Enum):
    """What runs a kernel: a fused loop nest, a library call, or an op's numpy forward."""

    LOOP = "loop"
    CALL = "call"
    PYTHON = "python"


class Role(enum.Enum):
    """Where in its kernel an equation's value is made (what can read it, and from where)."""

    READY = "ready"  # before every kernel: a tape input or constant
    PROLOGUE = "prologue"  # a 0-d value computed before its loop
    BODY = "body"  # one value per element of the loop's space
    REDUCED = "reduced"  # an accumulator: complete only after the loop
    EPILOGUE = "epilogue"  # a 0-d value computed after the loop, from accumulators
    CALL = "call"  # the result of a library call or Python step


def is_elementwise(e: Eqn) -> bool:
    """Ops with a scalar lowering (`OpDef.lower`; expand is a broadcast read)."""
    return e.op.lower is not None


def is_reduction(e: Eqn) -> bool:
    """Reductions fused as accumulators (`OpDef.reduction`)."""
    red = e.op.reduction
    if red is None or not e.params["dims"] or e.inputs[0].ndim == 0:
        return False
    # max/min accumulators start at -inf/+inf: floating point only
    return not red.floats_only or e.inputs[0].dtype.kind == "f"


def is_call(e: Eqn) -> bool:
    """The op's `OpDef.call` covers this equation (its params, dtypes and sizes)."""
    return e.op.call is not None and e.op.call.applies(e)


def may_return_view(k: Any) -> bool:
    """A call or Python step whose result may be a view of its first input (numpy's reshape,
    transpose, basic indexing): every op whose `OpDef.new_array` is not set."""
    return k.kind is not KernelKind.LOOP and not k.eqn.op.new_array and bool(k.eqn.inputs)


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

    kind = KernelKind.LOOP

    @property
    def eqns(self) -> list[Eqn]:
        return self.prologue + self.body + self.reductions + self.epilogue

    def space_var(self) -> Var:
        """A var whose runtime shape is the loop's iteration space."""
        for e in self.body:
            return e.out
        return self.reductions[0].inputs[0]


@dataclass(eq=False)
class _SingleEqn:
    eqn: Eqn

    @property
    def eqns(self) -> list[Eqn]:
        return [self.eqn]


class CallKernel(_SingleEqn):
    """A library call between loops (`OpDef.call`: reshape, permute, indexing, cat, matmul via
    numpy's BLAS, ...)."""

    kind = KernelKind.CALL


class PythonStep(_SingleEqn):
    """An op without a lowering: its numpy forward runs between compiled segments."""

    kind = KernelKind.PYTHON


def partition(tape: Tape) -> list[Any]:
    """The kernels of `tape`, in execution order.

    Each equation goes to the *earliest* kernel where it is legal, not only to the last one:
    so the backward of a loss whose forward reads the logits in a loop fuses into that same
    loop when it only needs values ready before it (rule 1, side by side). A kernel that has to
    be new (a loop over a new space, a library call, a Python step) is scheduled as early as
    its inputs allow (rule 7), so that what needs it can still join the loops after it."""
    kernels: list[Any] = []
    # where each var is made: (kernel, role); tape inputs and constants are nowhere (ready)
    made_at: dict[int, tuple[Any, Role]] = {}
    pos: dict[int, int] = {}  # id(kernel) -> its index in `kernels`

    def place(x: Any) -> tuple[int, Role]:
        made = made_at.get(id(x)) if isinstance(x, Var) else None
        return (-1, Role.READY) if made is None else (pos[id(made[0])], made[1])

    def legal_in(k_index: int, ins: list, roles: tuple[Role, ...]) -> bool:
        # every input made before kernel k_index, or inside it in one of `roles`
        for x in ins:
            i, role = place(x)
            if i > k_index or (i == k_index and role not in roles):
                return False
        return True

    def loop(k_index: int) -> LoopKernel:
        return kernels[k_index]

    def earliest(ins: list) -> int:
        # rule 7: right after the kernel that makes the last of `ins`
        return max((place(x)[0] for x in ins), default=-1) + 1

    pinned: set[int] = set()  # rule 10: kernels that later insertions do not go before

    def insert(kernel: Any, at: int) -> int:
        while at < len(kernels) and id(kernels[at]) in pinned:
            at += 1
        kernels.insert(at, kernel)
        for i in range(at, len(kernels)):
            pos[id(kernels[i])] = i
        return at

    def new_loop(space: tuple, ins: list) -> int:
        return insert(LoopKernel(space=space), earliest(ins))

    def first_legal(space: tuple, ins: list, roles: tuple[Role, ...]) -> int | None:
        # kernels after the last call or Python step that an input comes from are candidates
        for i, k in enumerate(kernels):
            if k.kind is KernelKind.LOOP and k.space == space and legal_in(i, ins, roles):
                return i
        return None

    def put(x: Var, target: int, role: Role) -> None:
        made_at[id(x)] = (kernels[target], role)

    for e in tape.eqns:
        ins = [x for x in e.inputs if isinstance(x, Var)]
        if e.op.name == "const":
            continue  # constants are inputs of the executable, computed once
        if is_elementwise(e) and e.out.ndim == 0:
            # rule 3: 0-d equations go into a prologue when their inputs are ready before that
            # loop, or into the epilogue of the loop whose reduction they need (rule 2)
            last = max((place(x)[0] for x in ins), default=-1)
            after_loop = any(place(x) in ((last, Role.REDUCED), (last, Role.EPILOGUE)) for x in ins)
            target, part = None, None
            if last >= 0 and after_loop and kernels[last].kind is KernelKind.LOOP:
                target, part = last, "epilogue"
            else:
                for i in range(max(last, 0), len(kernels)):
                    if kernels[i].kind is KernelKind.LOOP and legal_in(i, ins, (Role.PROLOGUE,)):
                        target, part = i, "prologue"
                        break
            if target is None:
                target, part = new_loop((), ins), "prologue"
            getattr(loop(target), part).append(e)
            put(e.out, target, Role.PROLOGUE if part == "prologue" else Role.EPILOGUE)
            continue
        if is_elementwise(e):
            # rule 1: join the earliest loop over the same space whose body can read every
            # input: made before it, or a prologue scalar or body value of it (not a value
            # reduced in it: rule 2)
            target = first_legal(e.out.shape, ins, (Role.PROLOGUE, Role.BODY))
            if target is None or _delays_past_a_bigger_loop(kernels, earliest(ins), target, e):
                target = new_loop(e.out.shape, ins)
            loop(target).body.append(e)
            put(e.out, target, Role.BODY)
            continue
        if is_reduction(e):
            # rule 2: a reduction over a loop's space joins it as an accumulator
            target = first_legal(ins[0].shape, ins, (Role.BODY,))
            if target is None:
                target = new_loop(ins[0].shape, ins)
            loop(target).reductions.append(e)
            put(e.out, target, Role.REDUCED)
            continue
        # rules 4 and 5: library calls and Python steps run between loops, after their inputs
        # (rule 7: as early as those allow)
        target = insert(CallKernel(e) if is_call(e) else PythonStep(e), earliest(ins))
        put(e.out, target, Role.CALL)
        if e.op.kind == "collective":
            # rule 10: a collective (DDP's all-reduce start) and the library calls making its
            # input (the bucket's cat, reshapes) stay where rule 7 put them: kernels placed
            # later at the same point (the rest of the backward) go after them, so the
            # communication starts as soon as the bucket's gradients exist
            todo = [kernels[target]]
            while todo:
                k = todo.pop()
                pinned.add(id(k))
                for x in k.eqns[0].inputs if k.kind is not KernelKind.LOOP else ():
                    made = made_at.get(id(x)) if isinstance(x, Var) else None
                    if made is not None and made[0].kind is KernelKind.CALL:
                        todo.append(made[0])

    _recompute_cheap_values(tape, kernels)
    _read_before_overwrite(tape, kernels)
    _mark_materialized(tape, kernels)
    # a loop whose every value moved to the loops that read it (rule 8) has nothing left to do
    return [k for k in kernels if k.eqns]


_CHAIN_LIMIT = 6  # equations recomputed per value, at most


def _recompute_cheap_values(tape: Tape, kernels: list[Any]) -> None:
    """Rule 8. A body value `v` of loop K whose readers outside K are all loops over v's own
    shape is recomputed in each of them when the equations making it (inside K) are cheap
    (`OpDef.cheap`, at most _CHAIN_LIMIT) and each array they read is smaller than v (a broadcast
    read) or already read by that loop -- or, for v's only reader, all but one of them; K then
    stops writing v, and stops computing it if it does not use it itself."""
    final = {id(x) for x in tape.outputs if isinstance(x, Var)}
    final |= {id(w.value) for w in tape.writes if isinstance(w.value, Var)}
    loops = [k for k in kernels if k.kind is KernelKind.LOOP]
    order = {id(e): i for i, e in enumerate(tape.eqns)}
    for k in loops:
        made = {id(e.out): e for e in k.body}
        for e in list(k.body):
            v = e.out
            if id(v) in final:
                continue
            readers = [c for c in kernels if c is not k and any(_reads(q, v) for q in c.eqns)]
            if not readers or any(
                c.kind is not KernelKind.LOOP or tuple(c.space) != tuple(v.shape) or _defines(c, v)
                for c in readers
            ):
                continue
            chain = _chain(v, made)
            if chain is None:
                continue
            inside = {id(q.out) for q in chain}
            leaves = {
                id(x): x
                for q in chain
                for x in q.inputs
                if isinstance(x, Var) and id(x) not in inside
            }
            size = math.prod(v.shape)
            # arrays of v's size a reader would read in addition: none, or one for a single
            # reader (which then reads it instead of v: K no longer writes v, nor reads that
            # array for it -- SGD's `momentum * buf`, computed before the gradient exists,
            # moves into the update loop that reads it)
            extra = [
                x
                for c in readers
                for x in leaves.values()
                if x.ndim and math.prod(x.shape) >= size and not any(_reads(q, x) for q in c.eqns)
            ]
            if len(extra) > (1 if len(readers) == 1 else 0):
                continue
            for c in readers:
                have = {id(q.out) for q in c.body}
                # in tape order (a topological order) among the loop's own equations
                c.body = sorted(
                    c.body + [q for q in chain if id(q.out) not in have],
                    key=lambda q: order[id(q)],
                )
    # a loop keeps computing a value only while it (or a loop that does not recompute it, or
    # the result) needs it
    for k in loops:
        changed = True
        while changed:
            changed = False
            for e in reversed(k.body):
                v = e.out
                if id(v) in final or any(_reads(q, v) for q in k.eqns if q is not e):
                    continue
                if any(
                    c is not k and not _defines(c, v) and any(_reads(q, v) for q in c.eqns)
                    for c in kernels
                ):
                    continue
                if any(c is not k and _defines(c, v) for c in loops):
                    k.body.remove(e)
                    changed = True
        if not k.body and not k.reductions:
            k.space = ()  # nothing left to loop over: its 0-d equations only


def _read_before_overwrite(tape: Tape, kernels: list[Any]) -> None:
    """Rule 9: for each data write `old <- v`, the kernels after v's loop that read old (or a
    reshape/permute/Python-step view of it) move before that loop, together with the kernels
    between them that they need, when none of those needs the loop. Otherwise nothing moves
    (the write then goes through a separate buffer, as before)."""
    for w in tape.writes:
        v, old = w.value, w.target
        if w.kind is not WriteKind.DATA or not isinstance(v, Var) or not isinstance(old, Var):
            continue
        at = next((i for i, k in enumerate(kernels) if _defines(k, v)), None)
        if at is None:
            continue
        views = {id(old)}
        for k in kernels:
            if not may_return_view(k):
                continue
            x = k.eqn.inputs[0]
            if isinstance(x, Var) and id(x) in views:
                views.add(id(k.eqn.out))
        made = {}  # id(var) -> index of the first kernel that makes it
        for i, k in enumerate(kernels):
            for e in k.eqns:
                made.setdefault(id(e.out), i)
        moving: set[int] = set()  # kernel indices
        stack = [
            j
            for j in range(at + 1, len(kernels))
            if any(isinstance(x, Var) and id(x) in views for e in kernels[j].eqns for x in e.inputs)
        ]
        while stack:
            j = stack.pop()
            if j in moving:
                continue
            if j == at:
                moving = set()  # a reader needs the new value's loop: it cannot go first
                break
            moving.add(j)
            own = {id(e.out) for e in kernels[j].eqns}
            for e in kernels[j].eqns:
                for x in e.inputs:
                    if isinstance(x, Var) and id(x) not in own and made.get(id(x), -1) >= at:
                        stack.append(made[id(x)])
        if moving:
            first = [kernels[j] for j in sorted(moving)]
            rest = [k for j, k in enumerate(kernels[at:], at) if j not in moving]
            kernels[at:] = first + rest


def _chain(v: Var, made: dict[int, Eqn]) -> list[Eqn] | None:
    """The cheap equations of a loop body that compute `v` from values made before the loop
    (in body order), or None when one is not cheap or there are too many."""
    needed: dict[int, Eqn] = {}
    stack = [v]
    while stack:
        x = stack.pop()
        e = made.get(id(x))
        if e is None or id(x) in needed:
            continue
        if not e.op.cheap or len(needed) >= _CHAIN_LIMIT:
            return None
        needed[id(x)] = e
        stack.extend(y for y in e.inputs if isinstance(y, Var))
    order = list(made)
    return sorted(needed.values(), key=lambda q: order.index(id(q.out)))


def _reads(e: Eqn, v: Var) -> bool:
    return any(x is v for x in e.inputs)


def _defines(k: Any, v: Var) -> bool:
    return k.kind is KernelKind.LOOP and any(e.out is v for e in k.body)


def _delays_past_a_bigger_loop(kernels: list, ready: int, target: int, e: Eqn) -> bool:
    """Rule 7 for elementwise values: joining the loop at `target` would make the value wait
    behind a loop over a bigger space that could otherwise read it (a per-sample value of a
    loss, needed by the pass over the logits); a new loop before that one costs a pass over
    the smaller space only."""
    size = math.prod(e.out.shape)
    return any(
        k.kind is KernelKind.LOOP and math.prod(k.space) > size for k in kernels[ready:target]
    )


def _mark_materialized(tape: Tape, kernels: list[Any]) -> None:
    """Rule 6: a body value is written to memory only when something outside its loop reads
    it (a later kernel, an output, a state write)."""
    owner: dict[int, Any] = {}
    for k in kernels:
        if k.kind is KernelKind.LOOP:
            for e in k.body:
                owner.setdefault(id(e.out), k)
    needed: set[int] = set()
    for k in kernels:
        for e in k.eqns:
            for x in e.inputs:
                if (
                    isinstance(x, Var)
                    and id(x) in owner
                    and owner[id(x)] is not k
                    and not _defines(k, x)  # recomputed there (rule 8)
                ):
                    needed.add(id(x))
    for x in list(tape.outputs) + [w.value for w in tape.writes]:
        if isinstance(x, Var) and id(x) in owner:
            needed.add(id(x))
    for k in kernels:
        if k.kind is KernelKind.LOOP:
            # written by the loop that computes it first (a loop recomputing it keeps its own
            # copy in a register)
            k.materialize = [e.out for e in k.body if id(e.out) in needed and owner[id(e.out)] is k]


def describe(kernels: list[Any]) -> str:
    """One line per kernel (TRACEGRAD_DEBUG=2)."""
    lines = []
    for n, k in enumerate(kernels):
        if k.kind is KernelKind.LOOP:
            lines.append(
                f"kernel {n}: loop over {k.space}: {len(k.prologue)} prologue, "
                f"{len(k.body)} body, {len(k.reductions)} reductions, {len(k.epilogue)} "
                f"epilogue; writes {len(k.materialize)} arrays"
            )
        else:
            lines.append(f"kernel {n}: {k.kind.value} {k.eqn.op.name}")
    return "\n".join(lines)
