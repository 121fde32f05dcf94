"""The CUDA executable: a tape run as generated `numba.cuda` kernels (codegen/cuda.py).

Same partition as the CPU (`fuse.partition`), same segments: each run of loop kernels and
library calls (matmul included: a tiled kernel on the GPU) becomes one generated module with a
host function that launches its kernels in order; indexing, cat, gather/scatter_add, conv2d and
pooling have kernels too (codegen/cuda.py's `cuda_lowers` lists them). The other ops
(indexing by index tensors, random draws, argsort, ...) run as host steps: their inputs are
copied to the host, the numpy forward runs, the result is copied back (correct, and slow:
`stats["host_steps"]` counts them, `f.source()` names them).

Arguments may be host (numpy) or device arrays; host ones are copied in, device ones used as
they are. Results are device arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..codegen.program import CudaSegmentCode, write_cuda_program
from ..devices import (
    as_kernel_array,
    copy,
    cuda,
    from_kernel_array,
    is_device_array,
    to_host,
)
from ..tape.ir import Var
from . import compile_cache


class _CudaSegment:
    """A segment of the program with its compiled module's host function."""

    def __init__(self, code: CudaSegmentCode, fn: Any) -> None:
        self.code = code
        self.source = code.source
        self.fn = fn
        # sizes as Python ints (what numba.cuda's allocation and reshape expect)
        self.S = code.naming.shape_table().astype(object)
        self.LF, self.LI = code.naming.literals()
        self.in_keys = [id(v) for v in code.inputs]
        self.out_keys = [id(v) for v in code.outputs]


class CudaExecutable:
    kind = "cuda"

    def __init__(self, tape: Any, stats: dict) -> None:
        self.cuda = cuda()  # (raises first where no GPU or simulator is available)
        self.tape = tape
        self.stats = stats
        stats.setdefault("host_steps", 0)
        self.program = write_cuda_program(tape, compile_cache.disk_enabled())
        self.kernels = self.program.kernels
        self.consts = {
            k: as_kernel_array(self.cuda.to_device(a)) for k, a in self.program.consts.items()
        }
        self.steps = [
            _CudaSegment(s, compile_cache.load(s.source)) if isinstance(s, CudaSegmentCode) else s
            for s in self.program.steps
        ]
        # results must not be an argument's array (or a view of one): those are copied
        self._fresh = self.program.fresh

    def __call__(self, args: Sequence[Any], captured: Sequence[Any]) -> tuple:
        to_device = self.cuda.to_device
        env: dict[int, Any] = dict(self.consts)
        for v, a in zip(self.tape.args + self.tape.captured, [*args, *captured]):
            if not is_device_array(a):
                a = to_device(np.ascontiguousarray(a, dtype=v.dtype))
            elif a.dtype != v.dtype:
                raise TypeError(f"tg.jit(device='cuda'): expected {v.dtype}, got {a.dtype}")
            env[id(v)] = as_kernel_array(a)
        for step in self.steps:
            if type(step) is _CudaSegment:
                fn = step.fn
                first = not getattr(fn, "_tracegrad_seen", False)
                result = fn(*[env[k] for k in step.in_keys], step.S, step.LF, step.LI)
                if first:
                    fn._tracegrad_seen = True
                    self._count_first_call(fn)
                for key, r in zip(step.out_keys, result):
                    env[key] = r
            else:
                e = step.eqn
                self.stats["host_steps"] += 1
                vals = []
                for x in e.inputs:
                    if isinstance(x, Var):
                        vals.append(to_host(env[id(x)]).reshape(x.shape))
                    else:
                        vals.append(x)
                out = np.asarray(e.op.forward(*vals, **e.params), dtype=e.out.dtype)
                env[id(e.out)] = as_kernel_array(to_device(np.ascontiguousarray(out)))
        outputs = []
        for x in self.tape.outputs:
            if isinstance(x, Var):
                value = from_kernel_array(env[id(x)], x.ndim)
                outputs.append(value if id(x) in self._fresh else copy(value))
            else:
                outputs.append(from_kernel_array(to_device(np.asarray(x)), 0))
        writes = []
        for w in self.tape.writes:
            if w.value is None:
                writes.append(None)
            elif isinstance(w.value, Var):
                value = from_kernel_array(env[id(w.value)], w.value.ndim)
                writes.append(value if id(w.value) in self._fresh else copy(value))
            else:
                writes.append(to_device(np.asarray(w.value)))
        return tuple(outputs), tuple(writes)

    def _count_first_call(self, fn: Any) -> None:
        # the module's kernels compiled at their first launch now, or loaded their machine code
        # from Numba's disk cache (cache=True; the simulator compiles nothing and counts a compile)
        hits = 0
        for name, k in fn.__globals__.items():
            if name.startswith("kernel") and hasattr(k, "stats"):
                hits += sum(k.stats.cache_hits.values())
        self.stats["disk_hits" if hits else "compiles"] += 1

    def source(self) -> str:
        return self.program.source()
