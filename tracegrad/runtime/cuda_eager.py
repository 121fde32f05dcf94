"""Eager operations on CUDA tensors: each op runs as a one-equation tape through the CUDA target.

There is no second implementation of the ops for the GPU: `dispatch` sends an op whose inputs
live on the GPU here; the op is traced into a one-equation tape and built by the same
`CudaExecutable` as `tg.jit(device="cuda")` (partition, codegen/cuda.py, the source cache). The
built executable is kept per (op, params, input shapes and dtypes, literal values), so a repeated
op costs a dictionary lookup and its kernel launches; the generated source is size-generic, so a
new shape traces again but compiles nothing new.

Inputs may mix CUDA tensors with Python numbers, 0-d CPU tensors and integer or boolean CPU
tensors (indices), which are copied to the GPU, as PyTorch allows; any other CPU tensor is an
error that names the op, the shapes and the fix.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..autograd.grad_mode import no_grad
from ..devices import is_device_array, to_device
from ..ops.core import is_scalar
from ..tensor import device_hooks

stats = {"compiles": 0, "disk_hits": 0, "host_steps": 0, "builds": 0, "runs": 0}
_cache: OrderedDict = OrderedDict()
_CACHE_SIZE = 1024
_lock = threading.Lock()


def _freeze(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_freeze(v) for v in x))
    if isinstance(x, slice):
        return ("slice", x.start, x.stop, x.step)
    if isinstance(x, np.ndarray):
        return ("array", x.shape, x.dtype.str, x.tobytes())
    return (type(x).__name__, x)


def run_op(op: Any, args: tuple, params: dict) -> Any:
    """Run `op` on its (device) inputs; returns the result's device array."""
    from ..tensor import Tensor

    datas = []
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            if not is_device_array(d):
                d = _host_operand(op, args, d)
            datas.append(d)
            parts.append(("t", d.shape, d.dtype.str))
        elif is_scalar(a):
            parts.append(("n", type(a).__name__, a))
        else:
            raise TypeError(f"{op.name}: expected Tensors or numbers, got {type(a).__name__}")
    try:
        key: Any = (op.name, _freeze(params), tuple(parts))
        hash(key)
    except TypeError:
        key = None
    with _lock:
        exe = _cache.get(key) if key is not None else None
        if exe is not None:
            _cache.move_to_end(key)
        else:
            exe = _build(op, args, params, datas)
            if key is not None:
                _cache[key] = exe
                if len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
    stats["runs"] += 1
    outputs, _ = exe(datas, [])
    return outputs[0]


def _build(op: Any, args: tuple, params: dict, datas: list) -> Any:
    from ..tensor import Tensor, dispatch
    from ..trace.tracer import trace
    from .cuda_executor import CudaExecutable

    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]

    def one_op(*tensors: Any) -> Any:
        full = list(args)
        for i, t in zip(positions, tensors):
            full[i] = t
        return dispatch(op, tuple(full), params)

    placeholders = [Tensor._wrap(d) for d in datas]
    with no_grad():
        tape, _tracer, _tree, _leaves = trace(one_op, placeholders)
    stats["builds"] += 1
    return CudaExecutable(tape, stats)


def _host_operand(op: Any, args: tuple, d: Any) -> Any:
    """A CPU array next to CUDA tensors: 0-d values and indices are copied to the GPU."""
    if d.ndim == 0 or d.dtype.kind in "biu":
        return to_device(np.ascontiguousarray(d))
    shapes = ", ".join(
        f"{'cuda' if is_device_array(a._data) else 'cpu'}{list(a.shape)}"
        for a in args
        if hasattr(a, "_data")
    )
    raise RuntimeError(
        f"{op.name}: Expected all tensors to be on the same device, but found at least two "
        f"devices, cuda:0 and cpu! (inputs {shapes}). Move them with .to('cuda') (or .cpu())."
    )


device_hooks.run_op = run_op
