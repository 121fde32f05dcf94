"""Run the benchmark suite: python -m benchmarks [--quick] [--only NAME] [--json PATH] [--plot PATH]
(see benchmarks/suite.py)."""

from .suite import main

if __name__ == "__main__":
    main()
