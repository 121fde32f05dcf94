"""`tg.accelerator`: PyTorch's device-agnostic checks (`torch.accelerator`).

>>> import tracegrad as tg
>>> device = tg.accelerator.current_accelerator() if tg.accelerator.is_available() else "cpu"
"""

from __future__ import annotations

from typing import Any

from . import devices


def is_available() -> bool:
    """True when an accelerator (a CUDA GPU, or Numba's simulator when asked for) is usable."""
    return devices.available()


def current_accelerator(check_available: bool = False) -> Any:
    """The accelerator's device (`cuda`), or None when there is none."""
    from .tensor import Device

    return Device("cuda") if devices.available() else None


def device_count() -> int:
    return 1 if devices.available() else 0


__all__ = ["is_available", "current_accelerator", "device_count"]
