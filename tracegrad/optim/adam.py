"""Adam and AdamW: PyTorch's update rules (the default, single-tensor form)."""

from __future__ import annotations

from typing import Any

from .. import creation
from ..tensor import Tensor
from .optimizer import Optimizer, check_hyper


class Adam(Optimizer):
    """For each parameter p with gradient g, at step t (1, 2, ...)::

        g  = g + weight_decay * p                         (Adam; AdamW decays p instead)
        m  = lerp(m, g, 1 - beta1)                        (= beta1 * m + (1 - beta1) * g)
        v  = beta2 * v + (1 - beta2) * g * g
        vm = max(vm, v) if amsgrad else v
        p  = p - lr / (1 - beta1**t) * m / (sqrt(vm) / sqrt(1 - beta2**t) + eps)

    The step count `t` is a float32 tensor in the state (as PyTorch's), and the bias
    corrections are computed from it in float64, so a jitted step reads the count at run time
    instead of baking the first step's value into the compiled code.
    """

    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_hyper("learning rate", lr)
        check_hyper("epsilon value", eps)
        check_hyper("beta parameter at index 0", betas[0], 0.0, 1.0)
        check_hyper("beta parameter at index 1", betas[1], 0.0, 1.0)
        check_hyper("weight_decay value", weight_decay)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _new_state(self, p: Tensor, amsgrad: bool) -> dict:
        st = {
            "step": creation.tensor(0.0),
            "exp_avg": creation.zeros_like(p),
            "exp_avg_sq": creation.zeros_like(p),
        }
        if amsgrad:
            st["max_exp_avg_sq"] = creation.zeros_like(p)
        return st

    def _update(self, p: Tensor, grad: Tensor, group: dict) -> None:
        st = self._state_for(p, lambda: self._new_state(p, group["amsgrad"]))
        beta1, beta2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        if wd:
            if self._decoupled:
                p.mul_(1 - lr * wd)
            else:
                grad = grad.add(p, alpha=wd)
        step = st["step"]
        step.add_(1)
        exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        t = step.double()
        step_size = lr / (1 - beta1**t)
        bias_correction2_sqrt = (1 - beta2**t).sqrt()
        if group["amsgrad"]:
            vmax = st["max_exp_avg_sq"]
            vmax.copy_(vmax.maximum(exp_avg_sq))
            second = vmax
        else:
            second = exp_avg_sq
        denom = second.sqrt() / bias_correction2_sqrt.astype(p.dtype) + group["eps"]
        p.addcdiv_(exp_avg, denom, value=-step_size.astype(p.dtype))


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p * (1 - lr * weight_decay) before the Adam step
    (default weight_decay=0.01, as PyTorch)."""

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


__all__ = ["Adam", "AdamW"]
