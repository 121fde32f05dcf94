"""`tg.nn.parallel`: DistributedDataParallel (data parallelism over MPI, tracegrad.distributed)."""

from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
