"""Adam and AdamW: PyTorch's update rules (the default, single-tensor form)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import creation
from ..ops.lazy_numba import njit
from ..tensor import Tensor, tracing
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
        if _plain_arrays(p, grad, st) and _plain_numbers(group):
            _update_arrays(p, grad, st, group, self._decoupled)
            return
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


def _plain_arrays(p: Tensor, grad: Tensor, st: dict) -> bool:
    """Eager CPU tensors of one dtype and shape, the parameter writeable, not being traced."""
    if tracing.tracer is not None or type(st["step"]._data) is not np.ndarray:
        return False
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    arrays = [p._data, grad._data] + [st[k]._data for k in names if k in st]
    P = p._data
    return P.flags.writeable and all(
        type(a) is np.ndarray and a.dtype == P.dtype and a.shape == P.shape for a in arrays
    )


def _plain_numbers(group: dict) -> bool:
    values = (group["lr"], *group["betas"], group["eps"], group["weight_decay"])
    return all(type(v) in (int, float) for v in values)


def _update_arrays(p: Tensor, grad: Tensor, st: dict, group: dict, decoupled: bool) -> None:
    """`Adam._update` on the arrays: the same numpy operations in the same order, so the same
    bits (tests/nn: equal to the tensor form, bit for bit), without a tensor op per step --
    for a GPT's 30 parameters 450 op dispatches, 8 of its 49 ms eager step."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # as the ops run
        _adam_arrays(p._data, grad._data, st, group, decoupled)
    for t in (p, *st.values()):
        if isinstance(t, Tensor):
            t._version[0] += 1


def _adam_arrays(P: np.ndarray, G: np.ndarray, st: dict, group: dict, decoupled: bool) -> None:
    beta1, beta2 = group["betas"]
    lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
    if group["maximize"]:
        G = np.negative(G)
    step = st["step"]._data
    np.add(step, 1, out=step)
    M, V = st["exp_avg"]._data, st["exp_avg_sq"]._data
    weight = 1 - beta1
    lerp_big = abs(weight) >= 0.5  # Tensor.lerp_'s two forms, as PyTorch rounds them
    if lerp_big:
        weight = float(np.asarray(1, P.dtype) - np.asarray(weight, P.dtype))
    t = step.astype(np.float64)  # the bias corrections depend on the step alone
    step_size = np.divide(lr, np.subtract(1, np.power(beta1, t)))
    bias_correction2_sqrt = np.sqrt(np.subtract(1, np.power(beta2, t)))
    if _fused(P, G, M, V, group):
        c = P.dtype.type  # each number as numpy casts a Python float against P's dtype
        _adam_fused(
            P.reshape(-1),
            G.reshape(-1),
            M.reshape(-1),
            V.reshape(-1),
            c(1 - lr * wd) if wd and decoupled else c(1),
            c(wd) if wd and not decoupled else c(0),
            lerp_big,
            c(weight),
            c(beta2),
            c(1 - beta2) if 1 - beta2 != 1 else c(1),
            c(bias_correction2_sqrt),
            c(eps),
            c(np.negative(step_size)),
        )
        return
    if wd:
        if decoupled:
            np.multiply(P, 1 - lr * wd, out=P)
        else:
            G = np.add(G, np.multiply(P, wd))
    tmp = np.empty_like(P)  # (0-d arrays too: numpy returns scalars unless given an out)
    np.subtract(G, M, out=tmp)
    np.multiply(tmp, weight, out=tmp)
    if lerp_big:
        np.subtract(G, tmp, out=M)
    else:
        np.add(M, tmp, out=M)
    np.multiply(V, beta2, out=V)
    np.multiply(G, G, out=tmp)
    if 1 - beta2 != 1:
        np.multiply(tmp, 1 - beta2, out=tmp)
    np.add(V, tmp, out=V)
    second = V
    if group["amsgrad"]:
        second = st["max_exp_avg_sq"]._data
        np.maximum(second, V, out=second)
    denom = tmp
    np.sqrt(second, out=denom)
    np.divide(denom, bias_correction2_sqrt.astype(P.dtype), out=denom)
    np.add(denom, eps, out=denom)
    np.divide(M, denom, out=denom)
    np.multiply(denom, np.negative(step_size).astype(P.dtype), out=denom)
    np.add(P, denom, out=P)


def _fused(P: np.ndarray, G: np.ndarray, M: np.ndarray, V: np.ndarray, group: dict) -> bool:
    """Whether `_adam_fused` applies: float32/float64 C-contiguous arrays, no amsgrad or
    maximize (their few users keep the numpy path)."""
    return (
        P.dtype in (np.float32, np.float64)
        and not group["amsgrad"]
        and not group["maximize"]
        and all(a.flags.c_contiguous for a in (P, G, M, V))
    )


@njit(cache=True, error_model="numpy")
def _adam_fused(P, G, M, V, decay, wd, lerp_big, weight, beta2, scale_gg, bc2, eps, neg_step):  # noqa: ANN001, ANN201, PLR0913
    """`_adam_arrays`'s numpy path in one pass over the elements: the same operations in the
    same order on numbers of P's dtype (no fastmath: nothing is contracted or reordered), so
    the same bits (tests/nn/test_optim.py). For a GPT's 29 parameters: one call each instead
    of about 13 numpy calls each."""
    for i in range(P.size):
        p = P[i] * decay if decay != 1 else P[i]
        g = G[i] + p * wd if wd != 0 else G[i]
        d = g - M[i]
        m = g - d * weight if lerp_big else M[i] + d * weight
        gg = g * g
        v = V[i] * beta2 + (gg * scale_gg if scale_gg != 1 else gg)
        den = np.sqrt(v) / bc2 + eps
        P[i] = p + (m / den) * neg_step
        M[i] = m
        V[i] = v


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
