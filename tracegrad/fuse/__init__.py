"""Stage 2: partitioning a tape into kernels (see `partition.py` for the fusion rules)."""

from .partition import CallKernel, LoopKernel, PythonStep, describe, partition

__all__ = ["partition", "describe", "LoopKernel", "CallKernel", "PythonStep"]
