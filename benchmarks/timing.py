"""How every benchmark here times its systems: alternating blocks, a pause before each.

Each system runs `repeats` timed calls in `blocks` blocks of consecutive calls; the systems'
blocks alternate (A A A, B B B, A A A, B B B, ...), and each block starts after a pause and one
untimed call.

Why not A B A B: every system measured here keeps a thread pool whose threads spin, holding
their cores, for a while after a call returns -- OpenBLAS (numpy, tracegrad's matmuls) about
0.1 s, PyTorch's OpenMP threads, JAX's Eigen pool. A call made right after another system's call
shares the cores with those spinning threads. Measured on the 2-core machine of
docs/benchmarks.md, ResNet-18 training step at batch 16: PyTorch 165 ms interleaved step by step
vs 102 ms in blocks, tracegrad 155 vs 145 ms -- interleaving made PyTorch look 1.6x slower than
it is. A training loop runs one system's steps back to back, which is what a block measures;
alternating the blocks still spreads the machine's slow drifts over every system.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

PAUSE_S = 0.2  # longer than OpenBLAS's spin (2**28 cycles, about 0.1 s)


def time_blocks(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    blocks: int = 4,
    pause: float = PAUSE_S,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """`repeats` timings (in `clock` units) of each function, taken as described above."""
    if repeats < 1 or blocks < 1:
        raise ValueError(f"time_blocks: repeats and blocks must be >= 1, got {repeats}, {blocks}")
    blocks = min(blocks, repeats)
    sizes = [repeats // blocks + (b < repeats % blocks) for b in range(blocks)]
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for size in sizes:
        for name, fn in fns.items():
            time.sleep(pause)
            fn()  # wakes this system's threads after the pause; not timed
            for _ in range(size):
                t0 = clock()
                fn()
                samples[name].append(clock() - t0)
    return samples
