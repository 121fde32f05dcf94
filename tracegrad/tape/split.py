"""Split a joint forward+backward tape into a forward program and a backward program.

`tg.jit` compiles a function whose outputs require grad (and that runs no backward itself) as
two programs, the way AOTAutograd does for `torch.compile`: it traces the forward, then the
reverse sweep for symbolic output cotangents (extra arguments of the tape) into the same tape::

    { lambda x:f32[4] g:f32[4] ; w:f32[4] ; let        args: forward arguments, then cotangents
        a = mul x w; b = sin a                          forward
        c = cos a; d = mul g c; e = mul d w             backward
      in (b, e) }                                       forward outputs, then gradients

`split_joint` cuts it in two. The forward program computes the forward outputs and state
writes, and returns the **residuals**: the values the backward part reads that the forward part
(or an input) defines. The backward program takes the residuals and the cotangents and returns
the gradients. Above, the forward returns `(b, a)` and the backward computes `(e)` from
`(a, w, g)`.

Which values are residuals is a choice (AOTAutograd's min-cut): a residual made by an
elementwise or shape op may be recomputed in the backward program from that op's inputs
instead, when those inputs cost fewer bytes to keep than it does. Inputs and forward outputs
cost nothing to keep (they exist anyway); other values cost their size. `cos(a)` above is
recomputed from `a` rather than stored; GELU's `erf(x)` from `x`, which the backward keeps
anyway. Random ops, reductions, products and library calls are never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Eqn, Tape, Var


@dataclass
class Residual:
    """Where the backward program's argument `var` comes from at run time: the forward's
    argument `index` (`kind == "arg"`), its captured input `index` ("captured"), or output
    `index` of the forward program ("out")."""

    var: Var
    kind: str
    index: int


@dataclass
class Split:
    forward: Tape
    backward: Tape
    residuals: list[Residual]
    n_outputs: int  # the forward program's outputs before its residual outputs
    recomputed: list[Eqn] = field(default_factory=list)
    saved_bytes: int = 0  # bytes of residuals that recomputation avoided keeping

    @property
    def residual_bytes(self) -> int:
        """Bytes of the residuals the forward program computes (inputs and forward outputs
        kept for the backward cost nothing extra)."""
        return sum(_nbytes(r.var) for r in self.residuals if r.kind == "out")


def _nbytes(v: Var) -> int:
    return v.size * v.dtype.itemsize


def _recomputable(e: Eqn) -> bool:
    return (e.op.kind == "elementwise" and e.op.lower is not None) or e.op.kind == "shape"


def split_joint(tape: Tape, n_args: int, n_outputs: int, recompute: bool = True) -> Split:
    """`tape.args[:n_args]` are the forward's arguments and the rest the output cotangents;
    `tape.outputs[:n_outputs]` the forward's outputs and the rest the gradients.
    `recompute=False` keeps every value the backward reads (for measuring what it saves)."""
    fwd_outs = tape.outputs[:n_outputs]
    grads = tape.outputs[n_outputs:]
    # the forward part: what the forward outputs and the state writes need
    live = {id(x) for x in fwd_outs if isinstance(x, Var)}
    live |= {id(w.value) for w in tape.writes if isinstance(w.value, Var)}
    in_fwd: set[int] = set()
    for e in reversed(tape.eqns):
        if id(e.out) in live:
            in_fwd.add(id(e))
            live.update(id(x) for x in e.inputs if isinstance(x, Var))
    defined_by = {id(e.out): e for e in tape.eqns if id(e) in in_fwd}
    arg_index = {id(v): i for i, v in enumerate(tape.args[:n_args])}
    captured_index = {id(v): i for i, v in enumerate(tape.captured)}
    out_ids = {id(x) for x in fwd_outs if isinstance(x, Var)}

    # the backward part reads these forward values
    in_bwd = [e for e in tape.eqns if id(e) not in in_fwd]
    needed: dict[int, Var] = {}
    bwd_defined = {id(e.out) for e in in_bwd} | {id(v) for v in tape.args[n_args:]}
    for e in in_bwd:
        for x in e.inputs:
            if isinstance(x, Var) and id(x) not in bwd_defined:
                needed[id(x)] = x
    for x in grads:
        if isinstance(x, Var) and id(x) not in bwd_defined:
            needed[id(x)] = x

    def cost(v: Var) -> int:
        if id(v) in arg_index or id(v) in captured_index or id(v) in out_ids:
            return 0
        return _nbytes(v)

    # recompute cheap values from their inputs where that keeps fewer bytes (to a fixed point)
    recomputed: dict[int, Eqn] = {}
    saved = 0
    changed = recompute
    while changed:
        changed = False
        for key, v in list(needed.items()):
            e = defined_by.get(key)
            if e is None or key in recomputed or not _recomputable(e) or cost(v) == 0:
                continue
            new = {id(x): x for x in e.inputs if isinstance(x, Var) and id(x) not in needed}
            extra = sum(cost(x) for x in new.values())
            if extra < cost(v):
                recomputed[key] = e
                saved += cost(v) - extra
                del needed[key]
                needed.update(new)
                changed = True

    residuals = []
    fwd_extra = []
    out_index = {id(x): i for i, x in enumerate(fwd_outs) if isinstance(x, Var)}
    for v in needed.values():
        if id(v) in out_index:  # a forward output: the same array (its version is checked)
            residuals.append(Residual(v, "out", out_index[id(v)]))
        elif id(v) in arg_index:
            residuals.append(Residual(v, "arg", arg_index[id(v)]))
        elif id(v) in captured_index:
            residuals.append(Residual(v, "captured", captured_index[id(v)]))
        else:
            residuals.append(Residual(v, "out", n_outputs + len(fwd_extra)))
            fwd_extra.append(v)

    fwd = Tape()
    fwd.args = list(tape.args[:n_args])
    fwd.captured = list(tape.captured)
    fwd.captured_labels = list(tape.captured_labels)
    fwd.eqns = [e for e in tape.eqns if id(e) in in_fwd]
    fwd.outputs = [*fwd_outs, *fwd_extra]
    fwd.writes = list(tape.writes)
    fwd.done = True

    bwd = Tape()
    bwd.args = [r.var for r in residuals] + list(tape.args[n_args:])
    recomputed_ids = {id(e) for e in recomputed.values()}
    bwd.eqns = [e for e in tape.eqns if id(e) in recomputed_ids or id(e) not in in_fwd]
    bwd.outputs = list(grads)
    bwd.done = True
    order = [e for e in tape.eqns if id(e) in recomputed_ids]
    return Split(fwd, bwd, residuals, n_outputs, order, saved)


__all__ = ["Residual", "Split", "split_joint"]
