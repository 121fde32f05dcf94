"""The reverse sweep: the one backward engine of tracegrad.

`.backward()`, `tg.autograd.grad` and every functional transform (`grad`, `vjp`, `jacobian`,
...) run `run_backward`: a topological sort of the `grad_fn` graph from the roots, then one
reverse pass that calls each node's VJP rules (`ops.OpDef.vjp`) and sums cotangents per node.

    y = 2*x**2 + 1                 AddBackward0 -> MulBackward0 -> PowBackward0 -> AccumulateGrad(x)
    y.backward()                   g=1 -> g=1 -> g=2 -> g=2*2*x = 8 at x=2: x.grad = 8

With `create_graph=True` the rules run with grad mode on, so the cotangents they produce have
a graph of their own and can be differentiated again (higher order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import ops
from ..tensor import HookTable, Tensor, _as_tensor, engine_hooks, mode_of, tracing, unpack_out
from .grad_mode import state
from .node import FREED_MESSAGE, AccumulateGrad, Node

# Hooks that run after a leaf's `.grad` was accumulated (Tensor.register_post_accumulate_grad_hook;
# DistributedDataParallel starts a bucket's all-reduce from them), and callbacks that run once
# the outermost backward's sweep is over (queue_callback: DDP waits for its all-reduces there).
post_accumulate_hooks = HookTable()
_callbacks: list = []
_depth = [0]
# counts outermost backward runs: a hook that saw an earlier run (one that raised before its
# callbacks ran) knows its state from then is stale (DistributedDataParallel)
generation = [0]


def queue_callback(fn: Any) -> None:
    """Run `fn()` when the backward that is running now has finished its sweep (PyTorch's
    `Variable._execution_engine.queue_callback`). Only valid while a backward runs."""
    if not _depth[0]:
        raise RuntimeError("queue_callback: no backward is running (call it from a hook)")
    _callbacks.append(fn)


def _after_accumulate(t: Tensor) -> None:
    hooks = post_accumulate_hooks.get(t)
    if hooks:
        for hook in list(hooks.values()):
            hook(t)


def backward(
    tensor: Tensor, gradient: Any, retain_graph: bool | None, create_graph: bool, inputs: Any
) -> None:
    grads = _make_grads([tensor], None if gradient is None else [gradient])
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        got = run_backward([tensor], grads, retain_graph, create_graph, inputs, True)
        for t, g in zip(inputs, got):
            if g is not None:
                _accumulate_grad(t, g, create_graph)
                if post_accumulate_hooks:
                    _after_accumulate(t)
        return
    run_backward([tensor], grads, retain_graph, create_graph)


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple:
    """Gradients of `outputs` with respect to `inputs`, returned (not added to `.grad`).

    >>> import tracegrad as tg
    >>> x = tg.tensor(3.0, requires_grad=True)
    >>> (dx,) = tg.autograd.grad(x**3, x, create_graph=True)
    >>> dx, tg.autograd.grad(dx, x)[0]
    (tensor(27., grad_fn=<MulBackward0>), tensor(18.))
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is not None:
        grad_outputs = (
            [grad_outputs] if isinstance(grad_outputs, (Tensor, np.ndarray)) else list(grad_outputs)
        )
    grads = _make_grads(outputs, grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    for t in inputs:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(
                "One of the differentiated Tensors does not require grad: every input of "
                "tg.autograd.grad must have requires_grad=True"
            )
    result = run_backward(outputs, grads, retain_graph, create_graph, inputs, allow_unused)
    return tuple(result)


def _make_grads(outputs: Sequence[Tensor], grad_outputs: Sequence[Any] | None) -> list:
    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise RuntimeError(
            f"grad_outputs has {len(grad_outputs)} entries but there are {len(outputs)} outputs"
        )
    grads = []
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn. "
                "Only tensors computed from a tensor with requires_grad=True can be "
                "differentiated: create the input with tg.tensor(..., requires_grad=True), and "
                "do not compute under tg.no_grad()."
            )
        g = None if grad_outputs is None else grad_outputs[i]
        if g is None:
            if out.numel() != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs, but this output "
                    f"has shape {tuple(out.shape)}. Pass the gradient of the final result with "
                    f"respect to it: out.backward(gradient=tg.ones_like(out)) sums the outputs"
                )
            g = Tensor._wrap(np.ones(out.shape, dtype=out.dtype))
            if out.device != "cpu":
                g = Tensor._wrap(g.to(out.device)._data)
        else:
            g = _as_tensor(g)
            if tuple(g.shape) != tuple(out.shape):
                raise RuntimeError(
                    f"Mismatch in shape: grad_output[{i}] has a shape of {tuple(g.shape)} and "
                    f"output[{i}] has a shape of {tuple(out.shape)}"
                )
            if g.dtype != out.dtype:
                g = g.astype(out.dtype)
        grads.append(g)
    return grads


def _root_node(t: Tensor) -> Node:
    return t.grad_fn if t.grad_fn is not None else t._get_accumulator()


def run_backward(
    roots: Sequence[Tensor],
    grads: Sequence[Tensor],
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence[Tensor] | None = None,
    allow_unused: bool = False,
) -> list:
    """The reverse sweep. Without `inputs` it adds into leaves' `.grad` (backward); with
    `inputs` it returns their gradients instead (autograd.grad)."""
    if not _depth[0]:
        generation[0] += 1
    _depth[0] += 1
    try:
        results = _sweep(roots, grads, retain_graph, create_graph, inputs, allow_unused)
    except BaseException:
        _depth[0] -= 1
        if not _depth[0]:
            _callbacks.clear()
        raise
    _depth[0] -= 1
    if not _depth[0]:
        while _callbacks:
            _callbacks.pop(0)()
    return results


def _sweep(
    roots: Sequence[Tensor],
    grads: Sequence[Tensor],
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence[Tensor] | None,
    allow_unused: bool,
) -> list:
    root_nodes = [_root_node(t) for t in roots]
    if tracing.tracer is not None:
        tracing.tracer.backward_calls += 1

    # 1. discover the graph and count, for every node, the edges that reach it
    deps: dict[Node, int] = {}
    stack = list(dict.fromkeys(root_nodes))
    order = stack[:]
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            if nxt in deps:
                deps[nxt] += 1
            else:
                deps[nxt] = 1
                stack.append(nxt)
                order.append(nxt)

    # 2. with `inputs`, only nodes that lead to one of them need their rules run
    capture: dict[Node, list[int]] = {}
    needed: set[Node] | None = None
    if inputs is not None:
        for i, t in enumerate(inputs):
            capture.setdefault(_root_node(t), []).append(i)
        needed = _needed(order, capture)

    # 3. the sweep, in topological order (a node runs once every edge into it has delivered)
    buffers: dict[Node, Any] = {}
    for node, g in zip(root_nodes, grads):
        _add_to(buffers, node, g)
    results: list = [None] * (len(inputs) if inputs is not None else 0)
    ready = [n for n in dict.fromkeys(root_nodes) if n not in deps]
    accumulate = inputs is None
    prev = state.enabled
    state.enabled = create_graph
    try:
        while ready:
            node = ready.pop()
            g = buffers.pop(node, None)
            if capture and node in capture:
                for i in capture[node]:
                    # a Function node with several outputs holds one cotangent per output; a
                    # tensor whose grad_fn it is is its output 0 (the others have edge nodes)
                    results[i] = g[0] if type(g) is list else g
            if type(node) is AccumulateGrad:
                if accumulate and g is not None:
                    _accumulate_grad(node.variable, g, create_graph)
                    if post_accumulate_hooks:
                        _after_accumulate(node.variable)
            elif g is not None and (needed is None or node in needed):
                _run_node(node, g, buffers, needed, accumulate)
                if not retain_graph:
                    node.release()
            for nxt, _ in node.next_functions:
                if nxt is not None:
                    left = deps[nxt] - 1
                    deps[nxt] = left
                    if left == 0:
                        ready.append(nxt)
    finally:
        state.enabled = prev

    if inputs is not None and not allow_unused:
        for i, r in enumerate(results):
            if r is None:
                raise RuntimeError(
                    f"One of the differentiated Tensors (input {i}, shape "
                    f"{tuple(inputs[i].shape)}) appears to not have been used in the graph. Set "
                    "allow_unused=True if this is the desired behavior."
                )
    return results


def _needed(order: list[Node], capture: dict) -> set[Node]:
    """Nodes from which a captured node can be reached (reverse topological closure)."""
    needed = set(capture)
    # `order` is a DFS discovery order; iterate to a fixed point (graphs are DAGs, few rounds)
    changed = True
    while changed:
        changed = False
        for node in reversed(order):
            if node in needed:
                continue
            if any(n is not None and n in needed for n, _ in node.next_functions):
                needed.add(node)
                changed = True
    return needed


def _run_node(node: Node, g: Any, buffers: dict, needed: set | None, keep_retained: bool):
    if node.op is None:  # a tg.autograd.Function's node (autograd/function.py)
        if node.freed:
            raise RuntimeError(FREED_MESSAGE)
        grads = node.run(g)
        for (nxt, nr), gi in zip(node.next_functions, grads):
            if nxt is None or gi is None or (needed is not None and nxt not in needed):
                continue
            _add_to(buffers, nxt, gi, nr)
        return
    if node.retained is not None and keep_retained:
        t = node.retained()
        if t is not None:
            _accumulate_grad(t, g, state.enabled)
    if node.freed:
        raise RuntimeError(FREED_MESSAGE)
    for i, cell, version in node.saved_versions:
        if cell[0] != version:
            _raise_modified(node, node.inputs[i], cell[0], version)
    if node.out_version is not None and node.out_version[0] != node.out_saved_version:
        _raise_modified(node, node.out_data, node.out_version[0], node.out_saved_version, True)
    op = node.op
    out = unpack_out(node) if node.out_data is not None else None
    inputs = node.inputs
    params = node.params
    rules = op.vjp
    for i, (nxt, nr) in enumerate(node.next_functions):
        if nxt is None or (needed is not None and nxt not in needed):
            continue
        if op.variadic:
            gi = rules[0](g, out, *inputs, argnum=i, **params)
        else:
            gi = rules[i](g, out, *inputs, **params)
        x = inputs[i]
        if gi.shape != x.shape:
            raise RuntimeError(
                f"internal error: the VJP rule of {op.name} for input {i} returned shape "
                f"{tuple(gi.shape)}, expected {tuple(x.shape)}"
            )
        if gi.dtype != x.dtype:
            gi = ops.astype(gi, dtype=x.dtype)
        _add_to(buffers, nxt, gi, nr)


def _add_to(buffers: dict, node: Node, g: Tensor, index: int = 0) -> None:
    """Sum `g` into `node`'s cotangent (of its output `index`: a Function node with several
    outputs keeps a list)."""
    n = node.n_outputs
    if n > 1:
        cell = buffers.get(node)
        if cell is None:
            cell = buffers[node] = [None] * n
        cell[index] = g if cell[index] is None else ops.add(cell[index], g)
        return
    prev = buffers.get(node)
    buffers[node] = g if prev is None else ops.add(prev, g)


def _accumulate_grad(t: Tensor, g: Tensor, create_graph: bool) -> None:
    """Add `g` into `t.grad`. Without create_graph `.grad` owns its buffer and later calls add
    into it in place (the same tensor object stays `.grad`, as PyTorch)."""
    if create_graph:
        t.grad = g if t.grad is None else ops.add(t.grad, g)
        return
    mode_of(t, g).accumulate(t, g)  # as the mode of the tensors does it (tensor.py)


def _raise_modified(node: Node, saved: Any, now: int, expected: int, is_output: bool = False):
    shape = list(np.shape(saved._data if isinstance(saved, Tensor) else saved))
    what = "output 0 of " + node.name() if is_output else "an input of " + node.name()
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [tensor of shape {shape}], which is {what}, is at version {now}; expected "
        f"version {expected} instead. Hint: do the in-place change after backward(), or use an "
        "out-of-place op (x = x + 1 instead of x += 1)."
    )


engine_hooks.backward = backward  # Tensor.backward runs this sweep
engine_hooks.post_accumulate_hooks = post_accumulate_hooks
