"""Backward graph nodes: what an op leaves behind for the reverse sweep.

A `Node` is the `grad_fn` of a tensor: the op that made it, the op's parameters, what its VJP
rules need (saved inputs, the output), and `next_functions`, one edge per input to the node that
made that input (or to the leaf's `AccumulateGrad`). Its class name is PyTorch's
(`MulBackward0`), so `type(y.grad_fn).__name__`, `y.grad_fn.name()` and `repr(y)` read as they
do in PyTorch.
"""

from __future__ import annotations

from typing import Any

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed when "
    "you call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)


class Node:
    """The `grad_fn` of a non-leaf tensor."""

    n_outputs = 1  # a tg.autograd.Function's node may have several (autograd/function.py)

    __slots__ = (
        "op",
        "params",
        "inputs",
        "next_functions",
        "saved_versions",
        "out_data",
        "out_version",
        "out_saved_version",
        "freed",
        "retained",
        "__weakref__",
    )

    def __init__(self, op: Any, params: dict, inputs: tuple, next_functions: tuple) -> None:
        self.op = op
        self.params = params
        self.inputs = inputs
        self.next_functions = next_functions
        self.saved_versions: tuple = ()
        self.out_data = None
        self.out_version = None
        self.out_saved_version = 0
        self.freed = False
        self.retained = None

    def name(self) -> str:
        return type(self).__name__

    @property
    def has_saved(self) -> bool:
        return bool(self.saved_versions) or self.out_version is not None

    def release(self) -> None:
        """Free what the VJP rules needed (after a backward without retain_graph)."""
        if self.saved_versions or self.out_version is not None:
            self.freed = True
            inputs = list(self.inputs)
            for i, _, _ in self.saved_versions:
                inputs[i] = None
            self.inputs = tuple(inputs)
            self.out_data = None

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"


class AccumulateGrad(Node):
    """The sink of a leaf that requires grad: the reverse sweep adds into `variable.grad`."""

    __slots__ = ("variable",)

    def __init__(self, variable: Any) -> None:
        super().__init__(None, {}, (), ())
        self.variable = variable

    @property
    def has_saved(self) -> bool:
        return False


_classes: dict[str, type] = {}


def node_class(name: str) -> type:
    """The Node subclass named `name` (`MulBackward0`), made once."""
    cls = _classes.get(name)
    if cls is None:
        cls = type(name, (Node,), {"__slots__": ()})
        _classes[name] = cls
    return cls
