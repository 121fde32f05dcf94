"""Functional transforms, JAX style: `grad`, `value_and_grad`, `vjp`, `jvp`, `jacobian`,
`hessian`, on pytrees of Tensors, arrays and Python numbers.

They are thin: each marks the differentiated arguments as fresh leaves that require grad, runs
the function with recording on, and calls the one reverse sweep (`engine.grad`). Nesting works
because a transform that runs inside another one's function (or on inputs that already require
grad) asks the sweep for `create_graph=True`, so its results stay differentiable:

    >>> import tracegrad as tg
    >>> tg.grad(tg.grad(lambda x: x**3))(2.0)
    tensor(12.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import ops
from ..ops.core import is_scalar
from ..tensor import Tensor
from . import engine
from .grad_mode import enable_grad
from .pytree import flatten, unflatten


class _Depth(threading.local):
    value = 0


_depth = _Depth()


def _argnums(argnums: Any, nargs: int, fn: str) -> tuple[tuple[int, ...], bool]:
    single = isinstance(argnums, (int, np.integer))
    nums = (int(argnums),) if single else tuple(int(a) for a in argnums)
    for a in nums:
        if not -nargs <= a < nargs:
            raise ValueError(
                f"{fn}: argnums {argnums} is out of range for a function called with {nargs} "
                "positional arguments"
            )
    return tuple(a % nargs for a in nums), single


def _leaf_input(x: Any, fn: str, where: str) -> tuple[Tensor, bool]:
    """A differentiated input as a tensor we can take gradients with respect to, and whether
    it already required grad (then the result must stay differentiable with respect to it)."""
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, np.ndarray) or is_scalar(x):
        t = Tensor(x) if is_scalar(x) else Tensor._wrap(x)
    else:
        raise TypeError(
            f"{fn}: {where} is a {type(x).__name__}; differentiated arguments must be Tensors, "
            "numpy arrays, Python numbers, or tuples/lists/dicts of them"
        )
    if t.dtype.kind != "f":
        raise TypeError(
            f"{fn}: {where} has dtype {t.dtype}; only floating point inputs can be "
            f"differentiated (pass 2.0 rather than 2, or convert with .float())"
        )
    if t.requires_grad:
        # an alias node: gradients are captured here, and still flow on to the outer graph
        return ops.reshape(t, shape=t.shape), True
    return t.detach().requires_grad_(True), False


def _prepare(fn: str, args: Sequence[Any], nums: tuple[int, ...]) -> tuple:
    args = list(args)
    groups = []
    external = False
    for a in nums:
        leaves, td = flatten(args[a])
        new = []
        for i, leaf in enumerate(leaves):
            t, ext = _leaf_input(
                leaf,
                fn,
                f"argument {a}"
                + (f" (leaf {i})" if td.num_leaves > 1 or td.kind != "leaf" else ""),
            )
            external |= ext
            new.append(t)
        args[a] = unflatten(td, new)
        groups.append((new, td))
    return args, groups, external


def _call(f: Callable, args: Sequence[Any], kwargs: dict) -> Any:
    _depth.value += 1
    try:
        with enable_grad():
            return f(*args, **kwargs)
    finally:
        _depth.value -= 1


def _keep_graph(external: bool) -> bool:
    # inside another transform, or on inputs that require grad: results must stay differentiable
    return external or _depth.value > 0


def _zeros_for(t: Tensor) -> Tensor:
    return Tensor._wrap(np.zeros(t.shape, dtype=t.dtype))


def _sweep(outs: list, inputs: list, cts: list, keep: bool, retain: bool) -> list:
    pairs = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
    if not pairs or not inputs:
        return [_zeros_for(t) for t in inputs]
    with enable_grad():
        gs = engine.grad(
            [o for o, _ in pairs],
            inputs,
            [c for _, c in pairs],
            retain_graph=retain or keep,
            create_graph=keep,
            allow_unused=True,
        )
    return [_zeros_for(t) if g is None else g for g, t in zip(gs, inputs)]


def _finish(x: Any, keep: bool) -> Any:
    if keep:
        return x
    leaves, td = flatten(x)
    return unflatten(td, [v.detach() if isinstance(v, Tensor) else v for v in leaves])


def _split_aux(out: Any, has_aux: bool, fn: str) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"{fn} with has_aux=True: the function must return a pair (output, aux)")
    return out[0], out[1]


def _scalar_output(out: Any, fn: str) -> Tensor:
    if is_scalar(out):
        out = Tensor(out)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"{fn}: the function must return a scalar Tensor, got {type(out).__name__}"
            + (" (use has_aux=True to return extra values)" if isinstance(out, tuple) else "")
        )
    if out.numel() != 1:
        raise TypeError(
            f"{fn} requires a function with a scalar output, got shape {tuple(out.shape)}. Reduce "
            "it (.sum(), .mean()) or use tg.jacobian / tg.vjp for non-scalar outputs"
        )
    if out.dtype.kind != "f":
        raise TypeError(f"{fn}: the output must be floating point, got {out.dtype}")
    return out


def value_and_grad(f: Callable, argnums: Any = 0, has_aux: bool = False) -> Callable:
    """A function returning `(f(*args), gradient of f at args)` (with `has_aux`:
    `((value, aux), gradient)`). `argnums` (an int or a tuple) selects the differentiated
    arguments; a tuple gives a tuple of gradients.

    >>> import tracegrad as tg
    >>> tg.value_and_grad(lambda x: (x**2).sum())(tg.tensor([1.0, 2.0]))
    (tensor(5.), tensor([2., 4.]))
    """

    def value_and_grad_f(*args: Any, **kwargs: Any) -> Any:
        nums, single = _argnums(argnums, len(args), "grad")
        args2, groups, external = _prepare("grad", args, nums)
        out, aux = _split_aux(_call(f, args2, kwargs), has_aux, "grad")
        out = _scalar_output(out, "grad")
        keep = _keep_graph(external)
        flat = [t for leaves, _ in groups for t in leaves]
        ones = Tensor._wrap(np.ones(out.shape, dtype=out.dtype))
        gs = _sweep([out], flat, [ones], keep, retain=False)
        grads = []
        start = 0
        for leaves, td in groups:
            grads.append(unflatten(td, gs[start : start + len(leaves)]))
            start += len(leaves)
        grads = grads[0] if single else tuple(grads)
        value = _finish(out, keep)
        if has_aux:
            return (value, _finish(aux, keep)), grads
        return value, grads

    value_and_grad_f.__name__ = f"value_and_grad({getattr(f, '__name__', 'f')})"
    value_and_grad_f.__wrapped__ = f
    return value_and_grad_f


def grad(f: Callable, argnums: Any = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar function: `grad(f)(x)` has the shape (and pytree structure) of
    `x`. Composes: `grad(grad(f))` is the second derivative.

    >>> import tracegrad as tg
    >>> tg.grad(lambda x: (x**2).sum())(tg.tensor([1.0, 2.0]))
    tensor([2., 4.])
    """
    vg = value_and_grad(f, argnums, has_aux)

    def grad_f(*args: Any, **kwargs: Any) -> Any:
        value, grads = vg(*args, **kwargs)
        if has_aux:
            return grads, value[1]
        return grads

    grad_f.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    grad_f.__wrapped__ = f
    return grad_f


def vjp(f: Callable, *primals: Any, has_aux: bool = False) -> Any:
    """`(f(*primals), vjp_fn)`; `vjp_fn(cotangent)` returns one cotangent per primal (a
    tuple), for a cotangent shaped like the output. `vjp_fn` may be called many times.

    >>> import tracegrad as tg
    >>> out, vjp_fn = tg.vjp(lambda x: x * 3, tg.tensor([1.0, 2.0]))
    >>> vjp_fn(tg.tensor([1.0, 10.0]))
    (tensor([ 3., 30.]),)
    """
    nums = tuple(range(len(primals)))
    args2, groups, external = _prepare("vjp", primals, nums)
    out, aux = _split_aux(_call(f, args2, {}), has_aux, "vjp")
    out_leaves, out_td = flatten(out)
    _check_outputs(out_leaves, "vjp")
    flat = [t for leaves, _ in groups for t in leaves]
    keep = _keep_graph(external)

    def vjp_fn(cotangent: Any) -> tuple:
        ct_leaves, ct_td = flatten(cotangent)
        if ct_td != out_td:
            raise ValueError(
                f"vjp_fn: the cotangent's structure {ct_td} differs from the output's {out_td}"
            )
        cts = []
        for i, (o, c) in enumerate(zip(out_leaves, ct_leaves)):
            c = c if isinstance(c, Tensor) else Tensor(np.asarray(c, dtype=o.dtype))
            if tuple(c.shape) != tuple(o.shape):
                raise ValueError(
                    f"vjp_fn: cotangent {i} has shape {tuple(c.shape)}, the output has shape "
                    f"{tuple(o.shape)}; they must match"
                )
            cts.append(c)
        gs = _sweep(out_leaves, flat, cts, keep or _depth.value > 0, retain=True)
        res = []
        start = 0
        for leaves, td in groups:
            res.append(
                _finish(unflatten(td, gs[start : start + len(leaves)]), keep or _depth.value > 0)
            )
            start += len(leaves)
        return tuple(res)

    if has_aux:
        return _finish(out, keep), vjp_fn, _finish(aux, keep)
    return _finish(out, keep), vjp_fn


def _check_outputs(leaves: list, fn: str) -> None:
    for i, o in enumerate(leaves):
        if not isinstance(o, Tensor):
            raise TypeError(
                f"{fn}: output leaf {i} is a {type(o).__name__}; outputs must be Tensors"
            )


def jvp(f: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple:
    """Forward-mode product: `(f(*primals), J @ tangents)`.

    Computed on the one reverse engine with the double-VJP trick: u -> J^T u is linear in u, so
    the gradient of <J^T u, t> with respect to u is J t.

    >>> import tracegrad as tg
    >>> tg.jvp(lambda x: x**2, (tg.tensor([1.0, 3.0]),), (tg.tensor([1.0, 1.0]),))
    (tensor([1., 9.]), tensor([2., 6.]))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (one entry per argument)")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    nums = tuple(range(len(primals)))
    args2, groups, external = _prepare("jvp", primals, nums)
    out = _call(f, args2, {})
    out_leaves, out_td = flatten(out)
    _check_outputs(out_leaves, "jvp")
    flat = [t for leaves, _ in groups for t in leaves]
    tan_leaves, tan_td = flatten(tuple(tangents))
    if len(tan_leaves) != len(flat):
        raise ValueError(f"jvp: tangents have {len(tan_leaves)} leaves, primals {len(flat)}")
    tans = []
    for i, (t, p) in enumerate(zip(tan_leaves, flat)):
        t = t if isinstance(t, Tensor) else Tensor(np.asarray(t, dtype=p.dtype))
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(
                f"jvp: tangent {i} has shape {tuple(t.shape)}, its primal {tuple(p.shape)}"
            )
        tans.append(t)
    keep = _keep_graph(external)
    us = [Tensor._wrap(np.zeros(o.shape, dtype=o.dtype)).requires_grad_(True) for o in out_leaves]
    pairs = [(o, u) for o, u in zip(out_leaves, us) if o.requires_grad]
    touts = [_zeros_for(o) for o in out_leaves]
    if pairs:
        with enable_grad():
            gs = engine.grad(
                [o for o, _ in pairs],
                flat,
                [u for _, u in pairs],
                retain_graph=True,
                create_graph=True,
                allow_unused=True,
            )
            terms = [
                ops.sum(ops.mul(g, t.astype(g.dtype)), dims=tuple(range(g.ndim)), keepdim=False)
                for g, t in zip(gs, tans)
                if g is not None and g.requires_grad
            ]
            if terms:
                s = terms[0]
                for term in terms[1:]:
                    s = ops.add(s, term)
                res = engine.grad([s], us, retain_graph=keep, create_graph=keep, allow_unused=True)
                touts = [_zeros_for(o) if r is None else r for r, o in zip(res, out_leaves)]
    return _finish(out, keep), _finish(unflatten(out_td, touts), keep)


def jacobian(f: Callable, argnums: Any = 0, has_aux: bool = False) -> Callable:
    """The Jacobian: for an output of shape O and an input of shape I, a tensor of shape O + I.
    Pytree outputs give the same structure of Jacobians; `argnums` a tuple gives a tuple.

    >>> import tracegrad as tg
    >>> tg.jacobian(lambda x: x**2)(tg.tensor([1.0, 2.0]))
    tensor([[2., 0.],
            [0., 4.]])
    """

    def jacobian_f(*args: Any, **kwargs: Any) -> Any:
        nums, single = _argnums(argnums, len(args), "jacobian")
        args2, groups, external = _prepare("jacobian", args, nums)
        out, aux = _split_aux(_call(f, args2, kwargs), has_aux, "jacobian")
        out_leaves, out_td = flatten(out)
        _check_outputs(out_leaves, "jacobian")
        flat = [t for leaves, _ in groups for t in leaves]
        keep = _keep_graph(external)
        per_out = []
        for o in out_leaves:
            rows = []
            for k in range(o.numel()):
                onehot = np.zeros(o.numel(), dtype=o.dtype)
                onehot[k] = 1
                ct = Tensor._wrap(onehot.reshape(o.shape))
                rows.append(_sweep([o], flat, [ct], keep, retain=True))
            jacs = []
            for j, t in enumerate(flat):
                if rows:
                    stacked = (
                        ops.cat(*[ops.reshape(r[j], shape=(1,) + t.shape) for r in rows], dim=0)
                        if len(rows) > 1
                        else ops.reshape(rows[0][j], shape=(1,) + t.shape)
                    )
                    jacs.append(ops.reshape(stacked, shape=tuple(o.shape) + tuple(t.shape)))
                else:
                    jacs.append(Tensor._wrap(np.zeros(tuple(o.shape) + tuple(t.shape), t.dtype)))
            start = 0
            per_arg = []
            for leaves, td in groups:
                per_arg.append(unflatten(td, jacs[start : start + len(leaves)]))
                start += len(leaves)
            per_out.append(per_arg[0] if single else tuple(per_arg))
        result = _finish(unflatten(out_td, per_out), keep)
        if has_aux:
            return result, _finish(aux, keep)
        return result

    jacobian_f.__name__ = f"jacobian({getattr(f, '__name__', 'f')})"
    return jacobian_f


jacrev = jacobian


def hessian(f: Callable, argnums: Any = 0) -> Callable:
    """The Hessian of a scalar function: `jacobian(jacobian(f))`; shape I + I for an input of
    shape I.

    >>> import tracegrad as tg
    >>> tg.hessian(lambda x: (x**3).sum())(tg.tensor([1.0, 2.0]))
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    """
    return jacobian(jacobian(f, argnums), argnums)
