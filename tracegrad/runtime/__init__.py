"""Stage 4: `tg.jit` — the cache, the executables, and writing captured state back."""

from . import cuda_eager  # noqa: F401  (installs how eager ops run on CUDA tensors)
from .jit import JitFunction, compile, jit

__all__ = ["compile", "jit", "JitFunction"]
