"""`nn.Parameter`: a Tensor that a Module registers as a parameter when assigned to it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad (by default) and that `Module.__setattr__` registers.

    As in PyTorch it shares memory with the tensor it is made from, and ops on it give plain
    Tensors.
    """

    __slots__ = ()

    def __new__(cls, data: Any = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = np.empty((0,), dtype=np.float32)
        if isinstance(data, Tensor):
            if data.grad_fn is not None:
                raise RuntimeError(
                    "Parameter(t): t must be a leaf tensor (no grad_fn); pass t.detach()"
                )
            array = data._concrete("nn.Parameter")
        else:
            array = np.asarray(data)
        p = cls._wrap(array)
        if isinstance(data, Tensor):
            p._version = data._version  # the same storage: one version counter
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        pass  # everything happens in __new__

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (Parameter, (Tensor(self.detach().numpy()), self.requires_grad))
