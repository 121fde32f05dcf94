"""Stage 4: `tg.jit` — the cache, the executables, and writing captured state back."""

from .jit import JitFunction, jit

__all__ = ["jit", "JitFunction"]
