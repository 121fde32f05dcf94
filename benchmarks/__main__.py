"""Run every benchmark: python -m benchmarks"""

from . import eager_overhead, fused_mean_square, jit_overhead

if __name__ == "__main__":
    eager_overhead.main([])
    fused_mean_square.main([])
    jit_overhead.main()
