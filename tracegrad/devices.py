"""Devices: CUDA's availability, device arrays and copies between host and device.

`numba.cuda` (the `numba-cuda` package, `pip install tracegrad[cuda]`) is imported only when
CUDA is first asked for, so `import tracegrad` costs nothing extra on machines without a GPU.
With `NUMBA_ENABLE_CUDASIM=1` Numba's simulator stands in for a GPU: kernels run as Python
threads on the host (slow; the test suite uses it on small shapes).

A CUDA tensor's data is a Numba device array (`DeviceNDArray`, or the simulator's
`FakeCUDAArray`), always C-contiguous. Inside compiled CUDA code 0-d values are held as arrays
of shape (1,) (a kernel cannot return a scalar); `as_kernel_array`/`from_kernel_array` convert.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

_DEVICE_TYPES: tuple[type, ...] = ()
_cuda: Any = None


def cuda() -> Any:
    """The `numba.cuda` module, checked to have a GPU (or the simulator); a clear error if not."""
    global _cuda, _DEVICE_TYPES
    if _cuda is not None:
        return _cuda
    try:
        from numba import cuda as numba_cuda
    except ImportError as e:  # pragma: no cover - numba-cuda is in the test extra
        raise RuntimeError(
            "tracegrad: the CUDA target needs the numba-cuda package: "
            "pip install 'tracegrad[cuda]' (or pip install numba-cuda)"
        ) from e
    if not numba_cuda.is_available():
        raise RuntimeError(
            "tracegrad: CUDA was asked for (device='cuda') but no CUDA GPU is available here "
            "(numba.cuda.is_available() is False: no NVIDIA driver or no GPU). Use "
            "device='cpu', or set NUMBA_ENABLE_CUDASIM=1 before starting Python to run the "
            "CUDA target on Numba's simulator (slow; for testing)."
        )
    _check_numpy_support()
    types: list[type] = []
    try:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray

        types.append(DeviceNDArray)
    except ImportError:  # pragma: no cover
        pass
    try:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        types.append(FakeCUDAArray)
    except ImportError:  # pragma: no cover
        pass
    _DEVICE_TYPES = tuple(types)
    _cuda = numba_cuda
    return numba_cuda


def _check_numpy_support() -> None:
    """numba-cuda's array support, imported now so that a numpy it cannot work with is named.

    numba-cuda <= 0.30.4 registers an overload of `np.row_stack`, which numpy 2.5 removed: with
    that pair every CUDA kernel fails to compile with "module 'numpy' has no attribute
    'row_stack'" (seen on an H200 image with numpy 2.5.2, 2026-11-29)."""
    try:
        import numba.cuda.np.arrayobj  # noqa: F401
    except AttributeError as e:
        import numba_cuda

        raise RuntimeError(
            f"tracegrad: the CUDA target cannot compile kernels here: numba-cuda "
            f"{getattr(numba_cuda, '__version__', '?')} does not support numpy {np.__version__} "
            f"({e}). Install a numpy it supports (pip install 'numpy<2.5') or a numba-cuda "
            "release that supports this numpy."
        ) from e


def available() -> bool:
    """True when CUDA code can run here (a GPU, or the simulator)."""
    try:
        cuda()
    except RuntimeError:
        return False
    return True


def simulated() -> bool:
    """True when CUDA runs on Numba's simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def is_device_array(x: Any) -> bool:
    # no device array can exist before numba.cuda was loaded through cuda() above
    return bool(_DEVICE_TYPES) and isinstance(x, _DEVICE_TYPES)


def to_device(a: Any) -> Any:
    """A device copy of a host array (or the device array itself)."""
    if is_device_array(a):
        return a
    a = np.asarray(a)
    # (not np.ascontiguousarray: it makes a 0-d array 1-d)
    return cuda().to_device(a if a.flags.c_contiguous else a.copy(order="C"))


def to_host(d: Any) -> np.ndarray:
    """A host copy of a device array (or the host array itself)."""
    if is_device_array(d):
        return d.copy_to_host()
    return np.asarray(d)


def copy(d: Any) -> Any:
    """A new device array with the same contents (device to device)."""
    out = cuda().device_array(d.shape, d.dtype)
    if d.size:
        out.copy_to_device(d)
    return out


def as_kernel_array(d: Any) -> Any:
    """A device array as compiled CUDA code takes it: 0-d values as shape (1,)."""
    return d.reshape(1) if d.ndim == 0 else d


def from_kernel_array(d: Any, ndim: int) -> Any:
    return d.reshape(()) if ndim == 0 and d.ndim != 0 else d


def device_name() -> str:
    """The GPU's name (or 'simulator')."""
    if simulated():
        return "Numba CUDA simulator"
    dev = cuda().get_current_device()
    name = dev.name
    return name.decode() if isinstance(name, bytes) else str(name)


def loaded() -> bool:
    """Whether numba.cuda was loaded (without loading it)."""
    return _cuda is not None or "numba.cuda" in sys.modules and bool(_DEVICE_TYPES)
