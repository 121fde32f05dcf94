"""Run every benchmark: python -m benchmarks"""

from . import eager_overhead

if __name__ == "__main__":
    eager_overhead.main()
