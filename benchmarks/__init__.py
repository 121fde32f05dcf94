"""tracegrad's benchmark suite. `python -m benchmarks` runs every benchmark; see README.md."""
