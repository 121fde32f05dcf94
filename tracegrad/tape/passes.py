"""Tape -> Tape passes that the compiler wants: dead-code elimination, common-subexpression
elimination, and simplification of the trivial equations that reverse mode leaves behind.

Before (the adjoint of `mean((2x+1)**2)` as traced)::

    f:f32[] = const[value=1.]
    g:f32[] = div f 6.0
    h:f32[2,3] = expand[shape=(2, 3)] g
    i:f32[2,3] = mul c 2
    j:f32[2,3] = mul h i
    k:f32[2,3] = mul j 2        (and, elsewhere, `mul x 1`, `add x 0`, reshape to the same shape)

`simplify` removes `mul x 1`, `add x 0`, `sub x 0`, `div x 1`, identity reshapes, permutes,
expands and casts, turns `sum(expand(x))` over the broadcast dims into `x * N`, a reshape
that puts a reduction's dims back into the reduction with `keepdim=True`, a permute of a
permute into one, and the transpose of a 2-D product into the product of the transposes;
`share_conv_columns` lets a convolution's weight gradient reuse its im2col; `cse` merges
equal equations; `dce` drops what no output or state write needs. Each returns a new tape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..ops.core import Aval
from .ir import Eqn, StateWrite, Tape, Var


def _rebuild(tape: Tape, eqns: list[Eqn], subst: dict[int, Any]) -> Tape:
    def s(x: Any) -> Any:
        while isinstance(x, Var) and id(x) in subst:
            x = subst[id(x)]
        return x

    new_eqns = [Eqn(e.op, tuple(s(x) for x in e.inputs), e.out, e.params) for e in eqns]
    outputs = [s(x) for x in tape.outputs]
    writes = [
        StateWrite(w.tensor_ref, w.kind, s(w.value), w.in_place, w.target) for w in tape.writes
    ]
    return tape.copy_with(new_eqns, outputs, writes)


def dce(tape: Tape) -> Tape:
    """Drop equations whose results no output and no state write uses."""
    live = {id(x) for x in tape.outputs if isinstance(x, Var)}
    live |= {id(w.value) for w in tape.writes if isinstance(w.value, Var)}
    kept = []
    for e in reversed(tape.eqns):
        if id(e.out) in live:
            kept.append(e)
            live.update(id(x) for x in e.inputs if isinstance(x, Var))
    kept.reverse()
    return tape.copy_with(kept, tape.outputs, tape.writes)


def _param_key(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ("array", id(v))
    if isinstance(v, slice):
        return ("slice", v.start, v.stop, v.step)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__,) + tuple(_param_key(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, _param_key(x)) for k, x in sorted(v.items()))
    try:
        hash(v)
    except TypeError:
        return ("id", id(v))
    return (type(v).__name__, v)


def cse(tape: Tape) -> Tape:
    """Merge equations that apply the same op with the same parameters to the same inputs."""
    seen: dict[Any, Var] = {}
    subst: dict[int, Any] = {}
    kept = []
    for e in tape.eqns:
        ins = tuple(subst.get(id(x), x) if isinstance(x, Var) else x for x in e.inputs)
        key = (
            e.op.name,
            tuple(("var", id(x)) if isinstance(x, Var) else (type(x).__name__, x) for x in ins),
            _param_key(e.params),
        )
        if key in seen and e.op.name != "const":
            subst[id(e.out)] = seen[key]
            continue
        seen[key] = e.out
        kept.append(Eqn(e.op, ins, e.out, e.params))
    return _rebuild(tape, kept, subst)


def _is_literal(x: Any, value: float, consts: dict | None = None) -> bool:
    """A Python number equal to `value`, or a 0-d constant holding it (the `1.` that seeds a
    backward pass)."""
    if isinstance(x, Var):
        c = consts.get(id(x)) if consts else None
        return c is not None and c.ndim == 0 and c.dtype.kind == "f" and float(c) == value
    return not isinstance(x, bool) and x == value


def _same_aval(x: Any, out: Var) -> bool:
    return isinstance(x, Var) and x.aval == out.aval


def simplify(tape: Tape) -> Tape:
    """Remove trivial equations (identities); sum-of-broadcast -> multiply; compose permutes;
    transposed 2-D products -> products of the transposes."""
    subst: dict[int, Any] = {}
    defs: dict[int, Eqn] = {}
    consts: dict[int, np.ndarray] = {}
    scalars: dict[int, Var] = {}  # var -> the 0-d var it is a broadcast of
    kept: list[Eqn] = []

    def s(x: Any) -> Any:
        while isinstance(x, Var) and id(x) in subst:
            x = subst[id(x)]
        return x

    uses: dict[int, int] = {}
    for x in (
        [x for e in tape.eqns for x in e.inputs]
        + list(tape.outputs)
        + [w.value for w in tape.writes]
    ):
        if isinstance(x, Var):
            uses[id(x)] = uses.get(id(x), 0) + 1

    for e in tape.eqns:
        ins = tuple(s(x) for x in e.inputs)
        name = e.op.name
        alias = None
        if name == "permute" and isinstance(ins[0], Var) and id(ins[0]) in defs:
            inner = defs[id(ins[0])]
            if inner.op.name == "permute":
                # permute(permute(x, p), q) = permute(x, p[q]): the identity when they undo
                # each other (the transpose of a transposed weight in a linear layer's VJP)
                p, q = inner.params["dims"], e.params["dims"]
                ins, e = (
                    (inner.inputs[0],),
                    Eqn(e.op, e.inputs, e.out, {"dims": tuple(p[i] for i in q)}),
                )
            elif inner.op.name == "matmul" and uses.get(id(ins[0])) == 1:
                swapped = _transposed_product(inner, e, defs, kept, tape)
                if swapped is not None:
                    kept.append(swapped)
                    defs[id(e.out)] = swapped
                    continue
        if name == "const":
            consts[id(e.out)] = e.params["value"]
        elif name == "expand" and isinstance(ins[0], Var) and id(ins[0]) in consts:
            c = consts[id(ins[0])]
            if c.ndim == 0:  # a broadcast scalar constant is that scalar everywhere
                consts[id(e.out)] = c
        if name == "mul":
            if _is_literal(ins[1], 1, consts) and _same_aval(ins[0], e.out):
                alias = ins[0]
            elif _is_literal(ins[0], 1, consts) and _same_aval(ins[1], e.out):
                alias = ins[1]
        elif name == "add":
            if _is_literal(ins[1], 0) and _same_aval(ins[0], e.out):
                alias = ins[0]
            elif _is_literal(ins[0], 0) and _same_aval(ins[1], e.out):
                alias = ins[1]
        elif name in ("sub", "div"):
            if _is_literal(ins[1], 0 if name == "sub" else 1) and _same_aval(ins[0], e.out):
                alias = ins[0]
        elif name in ("reshape", "expand", "astype", "permute"):
            if _same_aval(ins[0], e.out) and (
                name != "permute" or tuple(e.params["dims"]) == tuple(range(e.out.ndim))
            ):
                alias = ins[0]
        elif name == "sum" and isinstance(ins[0], Var) and id(ins[0]) in defs:
            replacement = _sum_of_expand(defs[id(ins[0])], e, ins)
            if replacement is not None:
                new_eqns, result = replacement
                kept.extend(new_eqns)
                subst[id(e.out)] = result
                continue
        if name == "reshape" and alias is None and isinstance(ins[0], Var) and id(ins[0]) in defs:
            kept_dims = _keepdim_form(defs[id(ins[0])], e.out)
            if kept_dims is not None:
                # reshape(sum(x, dims), keepdim shape) -> sum(x, dims, keepdim=True): the
                # reduction's loop writes the shape its readers broadcast, with no reshape
                # (a library call) between it and the loop that reads it
                new = Eqn(kept_dims.op, kept_dims.inputs, e.out, kept_dims.params)
                defs[id(e.out)] = new
                kept.append(new)
                continue
        if alias is not None:
            subst[id(e.out)] = alias
            continue
        op, params = e.op, e.params
        if name in ("expand", "reshape") and isinstance(ins[0], Var) and id(ins[0]) in scalars:
            # a broadcast scalar reshaped or broadcast again is that scalar broadcast once:
            # no reshape between loops, and the consumers fuse with their neighbours
            op, ins, params = ops.expand, (scalars[id(ins[0])],), {"shape": e.out.shape}
        new = Eqn(op, ins, e.out, params)
        if op is ops.expand and isinstance(ins[0], Var) and ins[0].ndim == 0:
            scalars[id(e.out)] = ins[0]
        defs[id(e.out)] = new
        kept.append(new)
    return dce(_rebuild(tape, kept, subst))


def _transposed_product(mm: Eqn, e: Eqn, defs: dict, kept: list, tape: Tape) -> Eqn | None:
    """permute[dims=(1, 0)](matmul(a, b)) -> matmul(b^T, a^T) for 2-D a and b, when the
    product is read only there: the weight gradient of a linear layer (x^T @ g, then
    transposed into the weight's layout) comes out of BLAS in the weight's layout, and the
    optimizer's loop reads it contiguously instead of across rows (an MLP's 512x784 update:
    1.2 -> 0.3 ms). The transposes are views that BLAS reads as they are."""
    a, b = mm.inputs
    if tuple(e.params["dims"]) != (1, 0) or not isinstance(a, Var) or not isinstance(b, Var):
        return None
    if a.ndim != 2 or b.ndim != 2:
        return None

    def transposed(x: Var) -> Var:
        d = defs.get(id(x))
        if d is not None and d.op.name == "permute" and tuple(d.params["dims"]) == (1, 0):
            return d.inputs[0]
        t = Var(Aval((x.shape[1], x.shape[0]), x.dtype), tape)
        new = Eqn(ops.permute, (x,), t, {"dims": (1, 0)})
        kept.append(new)
        defs[id(t)] = new
        return t

    return Eqn(ops.matmul, (transposed(b), transposed(a)), e.out, {})


def _keepdim_form(red: Eqn, out: Var) -> Eqn | None:
    """`red` with keepdim=True when that gives exactly `out`'s shape (a reshape of a reduction
    that puts the reduced dims back as size 1), else None."""
    if red.op.reduction is None or red.params.get("keepdim", True):
        return None
    x = red.inputs[0]
    dims = {d % x.ndim for d in red.params["dims"]} if x.ndim else set()
    shape = tuple(1 if d in dims else n for d, n in enumerate(x.shape))
    if shape != tuple(out.shape) or red.out.dtype != out.dtype:
        return None
    return Eqn(red.op, red.inputs, out, {**red.params, "keepdim": True})


def _sum_of_expand(expand_eqn: Eqn, sum_eqn: Eqn, ins: tuple) -> tuple | None:
    """sum(expand(x, S), dims) where dims are exactly the broadcast dims: x * N, reshaped."""
    if expand_eqn.op.name != "expand" or not isinstance(expand_eqn.inputs[0], Var):
        return None
    x = expand_eqn.inputs[0]
    shape = tuple(expand_eqn.params["shape"])
    lead = len(shape) - x.ndim
    broadcast = tuple(
        i for i in range(len(shape)) if i < lead or (x.shape[i - lead] == 1 and shape[i] != 1)
    )
    dims = tuple(sum_eqn.params["dims"])
    if dims != broadcast or x.dtype.kind != "f" or sum_eqn.out.dtype != x.dtype:
        return None
    n = 1
    for d in dims:
        n *= shape[d]
    if n == 0:  # a sum over nothing is 0, not x * 0 (which keeps NaNs)
        return None
    eqns = []
    value = x
    if x.shape != sum_eqn.out.shape:
        value = Var(Aval(sum_eqn.out.shape, x.dtype), x.tape)
        eqns.append(Eqn(ops.reshape, (x,), value, {"shape": sum_eqn.out.shape}))
    if n != 1:
        scaled = Var(Aval(sum_eqn.out.shape, x.dtype), x.tape)
        eqns.append(Eqn(ops.mul, (value, float(n)), scaled, {}))
        value = scaled
    return eqns, value


# A convolution keeps its im2col columns for its weight gradient when they are at most this
# large (a 3x3 convolution's columns are 9x its input, alive from the forward to the backward
# pass); larger ones are computed again by the backward pass, as eager mode does.
COLUMNS_KEPT_BYTES = 64 << 20


_CONV_PARAMS = ("stride", "padding", "dilation", "groups")


def share_conv_columns(tape: Tape) -> Tape:
    """conv2d -> permute(reshape(matmul(w, unfold2d(x)))) where the backward pass unfolds the
    same input with the same window (the weight gradient), so that `cse` merges the two
    im2cols: the forward's columns are reused instead of computed twice (ResNet-18 at batch
    16: 20 im2cols fewer, 157-160 -> 150-153 ms a step), and the result's permute fuses
    into the loops that read it (BatchNorm) instead of being a copy in conv2d. Costs memory: the
    columns stay alive until the backward pass, so only those up to `COLUMNS_KEPT_BYTES`."""
    unfolded = {
        (id(e.inputs[0]), _param_key(e.params)) for e in tape.eqns if e.op.name == "unfold2d"
    }
    eqns: list[Eqn] = []
    for e in tape.eqns:
        x, w = e.inputs if e.op.name == "conv2d" else (None, None)
        if x is None or not isinstance(x, Var) or not isinstance(w, Var):
            eqns.append(e)
            continue
        if ops.use_winograd(
            tuple(x.shape), tuple(w.shape), **{k: e.params[k] for k in _CONV_PARAMS}
        ):
            eqns.append(e)  # a Winograd convolution has no im2col to share (ops/nn.py)
            continue
        o, cg, kh, kw = w.shape
        n, _, oh, ow = e.out.shape
        window = {
            "kernel": (kh, kw),
            "stride": e.params["stride"],
            "padding": e.params["padding"],
            "dilation": e.params["dilation"],
        }
        cols_shape = (x.shape[1], kh, kw, n, oh, ow)
        nbytes = int(np.prod(cols_shape)) * x.dtype.itemsize
        if (id(x), _param_key(window)) not in unfolded or nbytes > COLUMNS_KEPT_BYTES:
            eqns.append(e)
            continue
        groups, k, nl = e.params["groups"], cg * kh * kw, n * oh * ow

        def var(shape: tuple) -> Var:
            return Var(Aval(shape, e.out.dtype), tape)

        cols, w_rows, cols_rows, prod, planes = (
            var(cols_shape),
            var((o, k) if groups == 1 else (groups, o // groups, k)),
            var((k, nl) if groups == 1 else (groups, k, nl)),
            var((o, nl) if groups == 1 else (groups, o // groups, nl)),
            var((o, n, oh, ow)),
        )
        eqns += [
            Eqn(ops.unfold2d, (x,), cols, window),
            Eqn(ops.reshape, (w,), w_rows, {"shape": w_rows.shape}),
            Eqn(ops.reshape, (cols,), cols_rows, {"shape": cols_rows.shape}),
            Eqn(ops.matmul, (w_rows, cols_rows), prod, {}),
            Eqn(ops.reshape, (prod,), planes, {"shape": planes.shape}),
            Eqn(ops.permute, (planes,), e.out, {"dims": (1, 0, 2, 3)}),
        ]
    return tape.copy_with(eqns, tape.outputs, tape.writes)


def optimize(tape: Tape) -> Tape:
    """The passes in the order the runtime applies them."""
    return dce(cse(simplify(share_conv_columns(tape))))
