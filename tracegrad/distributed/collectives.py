"""Collectives as ops: `all_reduce`, `broadcast`, `all_gather` over the default group's MPI
communicator, and `barrier`.

Each collective is an op (an `OpDef` with no lowering, kept out of the op table: see
`_collective`), so eagerly it runs its numpy forward and
inside `tg.jit` it is a Python step of the compiled program, placed right after the kernel that
makes its input (fuse/partition.py). PyTorch's functions change their tensor in place and return
None (or a finished `Work` with `async_op=True`); here the op computes the result and the
function copies it into the tensor, which under `tg.jit` is a state write like any in-place
change. The ops take no part in autograd (as c10d's); a CUDA tensor goes through a host copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops.core import Aval, OpDef, shape_error
from .process_group import _require, group, submit


def _collective(name: str, **fields: Any) -> OpDef:
    """A collective's OpDef. Not in the op table (`OPS`): the table's tests run every op in one
    process, and a collective needs the ranks of a job (tests/distributed runs them under
    mpiexec). Tracing, the tape passes and the compiled programs take an OpDef from the
    equation, so a collective is traced and compiled like any op without a lowering."""
    return OpDef(name=name, grad_name="", **fields)


class ReduceOp:
    """PyTorch's `dist.ReduceOp` names (the values are the ops' `op` parameter)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


_MPI_OPS = {"sum": "SUM", "avg": "SUM", "product": "PROD", "min": "MIN", "max": "MAX"}


def _comm() -> Any:
    return _require("tracegrad.distributed")


def _all_reduce_forward(x: Any, *, op: str) -> np.ndarray:
    comm = _comm()
    out = np.array(x, copy=True, order="C")
    comm.Allreduce(group.mpi.IN_PLACE, out, op=getattr(group.mpi, _MPI_OPS[op]))
    if op == "avg":
        np.divide(out, comm.size, out=out)
    return out


def _all_reduce_abstract(x: Any, *, op: str) -> Aval:
    if op not in _MPI_OPS:
        raise ValueError(f"all_reduce: unknown op {op!r}; use one of dist.ReduceOp's names")
    if op == "avg" and x.dtype.kind != "f":
        raise shape_error(
            "all_reduce",
            f"ReduceOp.AVG needs a floating tensor, got {x.dtype}",
            x.shape,
            fix="all-reduce with ReduceOp.SUM and divide, or convert to float first",
        )
    return Aval(tuple(x.shape), x.dtype)


all_reduce_op = _collective(
    "all_reduce",
    forward=_all_reduce_forward,
    abstract=_all_reduce_abstract,
    kind="collective",
    new_array=True,
)


def _broadcast_forward(x: Any, *, src: int) -> np.ndarray:
    out = np.array(x, copy=True, order="C")
    _comm().Bcast(out, root=src)
    return out


def _broadcast_abstract(x: Any, *, src: int) -> Aval:
    size = _comm().size
    if not 0 <= src < size:
        raise ValueError(f"broadcast: src rank {src} is out of range for a world of {size}")
    return Aval(tuple(x.shape), x.dtype)


broadcast_op = _collective(
    "broadcast",
    forward=_broadcast_forward,
    abstract=_broadcast_abstract,
    kind="collective",
    new_array=True,
)


def _all_gather_forward(x: Any) -> np.ndarray:
    comm = _comm()
    a = np.ascontiguousarray(x).reshape(-1)
    out = np.empty((comm.size,) + np.shape(x), dtype=a.dtype)
    comm.Allgather(a, out.reshape(comm.size, -1))
    return out


all_gather_op = _collective(
    "all_gather",
    forward=_all_gather_forward,
    abstract=lambda x: Aval((_comm().size,) + tuple(x.shape), x.dtype),
    kind="collective",
    new_array=True,
)


# ---- an all-reduce in two steps, so that a compiled program overlaps it with later work:
# `all_reduce_start(x, *after)` copies x into a buffer of its own and starts the (sum)
# all-reduce on the communication thread; `all_reduce_wait(started, after)` waits for it and
# finishes (AVG divides). The `after` inputs only order the steps: DistributedDataParallel
# passes the previous bucket's started buffer to each start (so every rank's program starts
# the buckets in bucket order, whatever order the partitioner gives the kernels that make the
# gradients: the ranks' collectives must match) and the last bucket's to each wait.

_pending: dict[int, tuple[np.ndarray, Any]] = {}


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _start_forward(x: Any, *after: Any) -> np.ndarray:
    comm, mpi = group.ddp_comm, group.mpi
    if comm is None:
        _comm()  # the usual error
    buf = np.array(x, copy=True, order="C")
    if group.threaded:
        future = submit(comm.Allreduce, mpi.IN_PLACE, buf, mpi.SUM)
    else:
        comm.Allreduce(mpi.IN_PLACE, buf, mpi.SUM)
        future = None
    _pending[_address(buf)] = (buf, future)
    return buf


def _wait_forward(started: Any, after: Any, *, op: str) -> np.ndarray:
    entry = _pending.pop(_address(started), None)
    if entry is None:
        raise RuntimeError(
            "all_reduce_wait: no all-reduce was started on this buffer (internal error: the "
            "start and the wait of an all-reduce must see the same array)"
        )
    buf, future = entry
    if future is not None:
        future.result()
    if op == "avg":
        np.divide(buf, group.ddp_comm.size, out=buf)
    return buf


all_reduce_start_op = _collective(
    "all_reduce_start",
    forward=_start_forward,
    abstract=lambda x, *after: Aval(tuple(x.shape), x.dtype),
    kind="collective",
    new_array=True,
)

all_reduce_wait_op = _collective(
    "all_reduce_wait",
    forward=_wait_forward,
    abstract=lambda started, after, *, op: Aval(tuple(started.shape), started.dtype),
    kind="collective",
)


class Work:
    """What a collective returns with `async_op=True`: here the collective has finished by then
    (PyTorch's `Work` API: `wait()`, `is_completed()`)."""

    def wait(self, timeout: Any = None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


def _in_place(tensor: Any, opdef: Any, what: str, **params: Any) -> None:
    from ..autograd.grad_mode import no_grad
    from ..tensor import Tensor

    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a tensor, got {type(tensor).__name__}")
    with no_grad():
        if tensor.device != "cpu":  # through the host (documented)
            tensor.copy_(opdef(tensor.cpu(), **params).to(tensor.device))
        else:
            tensor.copy_(opdef(tensor, **params))


def all_reduce(tensor: Any, op: Any = ReduceOp.SUM, group: Any = None, async_op: bool = False):
    """Reduce `tensor` across all ranks in place (every rank gets the result).

    op: ReduceOp.SUM (default), AVG, PRODUCT, MIN, MAX."""
    _in_place(tensor, all_reduce_op, "all_reduce", op=_op_name(op))
    return Work() if async_op else None


def broadcast(tensor: Any, src: int, group: Any = None, async_op: bool = False):
    """Copy rank `src`'s `tensor` into every rank's `tensor`."""
    _in_place(tensor, broadcast_op, "broadcast", src=int(src))
    return Work() if async_op else None


def all_gather(tensor_list: list, tensor: Any, group: Any = None, async_op: bool = False):
    """Fill `tensor_list[r]` with rank r's `tensor` (a list of world-size tensors of its shape
    and dtype, as PyTorch's)."""
    from ..autograd.grad_mode import no_grad

    size = _comm().size
    if len(tensor_list) != size:
        raise ValueError(
            f"all_gather: tensor_list has {len(tensor_list)} tensors but the world has {size} "
            f"ranks; pass [tg.empty_like(t) for _ in range({size})]"
        )
    for i, t in enumerate(tensor_list):
        if tuple(t.shape) != tuple(tensor.shape) or t.dtype != tensor.dtype:
            raise shape_error(
                "all_gather",
                f"tensor_list[{i}] must have the input's shape and dtype {tensor.dtype} "
                f"(it has {t.dtype})",
                t.shape,
                tensor.shape,
            )
    with no_grad():
        src = tensor.cpu() if tensor.device != "cpu" else tensor
        gathered = all_gather_op(src)
        for i, t in enumerate(tensor_list):
            t.copy_(gathered[i] if t.device == "cpu" else gathered[i].to(t.device))
    return Work() if async_op else None


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None):
    """Wait until every rank has reached this call."""
    _comm().Barrier()
    return Work() if async_op else None


def _op_name(op: Any) -> str:
    name = str(getattr(op, "name", op)).lower()
    if name not in _MPI_OPS:
        raise ValueError(
            f"all_reduce: op {op!r} is not supported; use ReduceOp.SUM, AVG, PRODUCT, MIN or MAX"
        )
    return name
