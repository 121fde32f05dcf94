"""tracegrad's benchmark suite. `python -m benchmarks` runs every benchmark; see README.md."""

import os

# Steady-state timings: tg.jit compiles on the first call instead of running calls eagerly while
# the background worker compiles (time_to_steps.py measures that first tier itself, and sets
# TRACEGRAD_JIT_BLOCK for each of its processes).
os.environ.setdefault("TRACEGRAD_JIT_BLOCK", "1")
