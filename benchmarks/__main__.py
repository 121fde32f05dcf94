"""Run every benchmark: python -m benchmarks"""

from . import conv2d, cross_entropy, eager_overhead, fused_mean_square, jit_overhead, training

if __name__ == "__main__":
    eager_overhead.main([])
    fused_mean_square.main([])
    cross_entropy.main([])
    jit_overhead.main()
    conv2d.main([])
    training.main([])
