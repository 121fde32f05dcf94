"""`tg.nn.utils`: gradient clipping and parameter/vector conversions, as `torch.nn.utils`.

The clipping functions are tensor ops with no Python branch on values (the clip coefficient
is clamped, not tested), so they compile inside a jitted training step; only
`error_if_nonfinite=True` needs the norm's value and so runs eagerly only."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import creation
from .. import functions as F
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


def _params(parameters: Any) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Any = None,
) -> Tensor:
    """Scale the `.grad`s in place so that their joint `norm_type`-norm is at most `max_norm`
    (by max_norm / (norm + 1e-6) when larger); returns the norm before clipping."""
    grads = [p.grad for p in _params(parameters) if p.grad is not None]
    if not grads:
        return creation.tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        norms = F.stack([F.norm(g, norm_type) for g in grads])
        total = F.amax(norms, ()) if norm_type == math.inf else F.norm(norms, norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from `parameters` is "
                "non-finite, so it cannot be clipped. To disable this error and scale the "
                "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
            )
        coef = F.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.astype(g.dtype))
    return total


def clip_grad_value_(parameters: Any, clip_value: float, foreach: Any = None) -> None:
    """Clamp every `.grad` in place to [-clip_value, clip_value]."""
    with no_grad():
        for p in _params(parameters):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated."""
    return F.cat([F.reshape(p, -1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of `vec` into the parameters (in place)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected a Tensor, but got: {type(vec).__name__}")
    offset = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(F.reshape(vec[offset : offset + n], *p.shape))
            offset += n


__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
