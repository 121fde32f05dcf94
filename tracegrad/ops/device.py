"""`to_device`: `Tensor.to(device)` as a node of the graph (PyTorch's ToCopyBackward0), whose
gradient goes back to the source device.

Not in the op table (`OPS`): it is not traceable -- a jitted function runs where its target
says (`tg.jit(f, device="cuda")`), and `Tensor.to` refuses to run under tracing. The array
moves through `hooks.move`, which the Tensor layer installs (the op table imports nothing else
of tracegrad's).
"""

from __future__ import annotations

from typing import Any

from .core import Aval, OpDef, hooks


def _to_device_abstract(x: Any, *, device: str, source: str) -> Aval:
    return Aval(x.shape, x.dtype)


to_device = OpDef(
    name="to_device",
    forward=lambda x, *, device, source: hooks.move(x, device),
    abstract=_to_device_abstract,
    vjp=(lambda g, out, x, *, device, source: g.to(source),),
    grad_name="ToCopyBackward0",
    kind="device",
)
