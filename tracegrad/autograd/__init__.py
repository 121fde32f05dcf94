"""Reverse-mode automatic differentiation: grad mode, the backward graph, the one reverse
sweep (`engine`), and the functional transforms built on it.

`grad_mode` and `node` come first (the Tensor layer needs them); the engine and what uses it
load on first use, because they need the Tensor layer in turn.
"""

from __future__ import annotations

import importlib
from typing import Any

from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .node import AccumulateGrad, Node

_LAZY = {
    "grad": "engine",
    "gradcheck": "gradcheck",
    "gradgradcheck": "gradcheck",
    "GradcheckError": "gradcheck",
    "functional": None,
    "engine": None,
    "pytree": None,
    "Function": "function",
    "FunctionCtx": "function",
    "once_differentiable": "function",
    "function": None,
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tracegrad.autograd' has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)


def backward(
    tensors: Any,
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> None:
    """`tg.autograd.backward(tensors, grad_tensors)`: backward from several roots at once."""
    from ..tensor import Tensor
    from . import engine

    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is not None and isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors]
    grads = engine._make_grads(tensors, grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    engine.run_backward(tensors, grads, retain_graph, create_graph)


__all__ = [
    "grad",
    "backward",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "gradcheck",
    "gradgradcheck",
    "GradcheckError",
    "Node",
    "AccumulateGrad",
    "Function",
    "FunctionCtx",
    "once_differentiable",
]
