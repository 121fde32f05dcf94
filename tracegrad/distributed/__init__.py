"""Several processes, one model: PyTorch's `torch.distributed` names over MPI (mpi4py).

    mpiexec -n 2 python train.py          # `pip install tracegrad[distributed]` brings mpiexec

    import tracegrad as tg
    import tracegrad.distributed as dist

    dist.init_process_group("mpi")        # every rank: MPI's COMM_WORLD
    model = tg.nn.parallel.DistributedDataParallel(Net())
    ...                                   # the usual loop: gradients arrive averaged

The collectives (`all_reduce`, `broadcast`, `all_gather`, `barrier`) work on CPU tensors in place
as PyTorch's do; a CUDA tensor goes through a host copy. They are ops (OpDefs kept outside
the op table, `distributed/collectives.py`), so a function compiled with `tg.jit` runs them as
steps of its program. docs/distributed.md has the launch, the cost model and what differs
from PyTorch.
"""

from __future__ import annotations

from .collectives import ReduceOp, all_gather, all_reduce, barrier, broadcast
from .process_group import (
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
)

__all__ = [
    "ReduceOp",
    "all_gather",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
]
