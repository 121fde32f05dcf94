"""`tg.cuda`: the device checks at the top of PyTorch's tutorials.

    >>> import tracegrad as tg
    >>> device = "cuda" if tg.cuda.is_available() else "cpu"
    >>> tg.zeros(2, device=device).device in ("cpu", "cuda")
    True

`is_available()` is True where CUDA code can run: an NVIDIA GPU with `numba-cuda` installed
(`pip install tracegrad[cuda]`), or Numba's CUDA simulator when `NUMBA_ENABLE_CUDASIM=1` asks
for it (docs/cuda.md)."""

from __future__ import annotations

from typing import Any

from . import devices


def is_available() -> bool:
    return devices.available()


def device_count() -> int:
    """1 when CUDA is available (tracegrad uses the current GPU), else 0."""
    return 1 if devices.available() else 0


def current_device() -> int:
    if not devices.available():
        raise RuntimeError(
            "tg.cuda.current_device(): no CUDA GPU (tg.cuda.is_available() is False)"
        )
    return 0


def get_device_name(device: Any = None) -> str:
    if not devices.available():
        raise RuntimeError(
            "tg.cuda.get_device_name(): no CUDA GPU (tg.cuda.is_available() is False)"
        )
    return devices.device_name()


def synchronize(device: Any = None) -> None:
    """Wait for the GPU's queued work (tracegrad's CUDA calls return finished work already)."""
    if devices.loaded():
        devices.cuda().synchronize()


def manual_seed(seed: int) -> None:
    """Seeds tracegrad's one generator (tg.manual_seed): the same numbers on every device."""
    from .creation import manual_seed as seed_all

    seed_all(seed)


manual_seed_all = manual_seed


def empty_cache() -> None:
    """Nothing to free: device arrays are released when their tensors are."""


__all__ = [
    "is_available",
    "device_count",
    "current_device",
    "get_device_name",
    "synchronize",
    "manual_seed",
    "manual_seed_all",
    "empty_cache",
]
