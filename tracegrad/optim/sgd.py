"""SGD with momentum, dampening, weight decay and Nesterov momentum: PyTorch's update rule."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from .optimizer import Optimizer, check_hyper, required


class SGD(Optimizer):
    """For each parameter p with gradient g (PyTorch's algorithm, step by step)::

    g = g + weight_decay * p                            (if weight_decay)
    b = g  on the first step, else  momentum * b + (1 - dampening) * g   (if momentum)
    g = g + momentum * b  if nesterov  else  b          (if momentum)
    p = p - lr * g                                      (p + lr * g if maximize)
    """

    def __init__(
        self,
        params: Any,
        lr: float = required,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if lr is not required:
            check_hyper("learning rate", lr)
        check_hyper("momentum value", momentum)
        check_hyper("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p: Tensor, grad: Tensor, group: dict) -> None:
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum:
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is None:  # the first step: the buffer starts as the gradient itself
                st = self._state_for(p, dict)
                st["momentum_buffer"] = buf = grad.clone().detach()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])
