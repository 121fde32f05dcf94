"""Stage 3: kernels -> generated Python source for Numba (`cpu.py`)."""
