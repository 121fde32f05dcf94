"""Reading PyTorch checkpoints without PyTorch and without running their code.

`torch.save` writes a zip archive: `<name>/data.pkl` (a pickle of the state dict in which each
tensor is a call to `torch._utils._rebuild_tensor_v2` on a storage) and `<name>/data/<key>`
(each storage's raw bytes). A pickle can call any importable function, so this reader's
unpickler resolves only the few names a state dict needs -- `collections.OrderedDict`, the
tensor and parameter rebuild functions, the storage types -- and refuses any other by name
(PyTorch's own `weights_only=True` does the same). Tensors come back as tracegrad tensors on
the CPU, in their saved dtype (bfloat16 storages widen to float32, which numpy lacks).

    >>> import tracegrad as tg
    >>> # sd = tg.load("resnet18-f37072fd.pth")   # torchvision's weights file, as saved
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

from .tensor import Tensor

_STORAGES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGES[name]


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


def _rebuild_tensor_v2(
    storage: np.ndarray,
    offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool = False,
    hooks: Any = None,
    metadata: Any = None,
) -> Tensor:
    size, stride = tuple(size), tuple(stride)
    if not size:
        return Tensor._wrap(np.array(storage[offset], copy=True))
    need = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if need > storage.size:
        raise ValueError(
            f"tg.load: a tensor of size {list(size)} and stride {list(stride)} at offset "
            f"{offset} reaches past its storage of {storage.size} elements (a damaged file?)"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=size,
        strides=tuple(s * storage.itemsize for s in stride),
        writeable=False,
    )
    t = Tensor._wrap(np.array(view, copy=True, order="C"))
    return t


def _rebuild_parameter(data: Tensor, requires_grad: bool = True, hooks: Any = None) -> Tensor:
    return data


def _rebuild_parameter_with_state(
    data: Tensor, requires_grad: bool, hooks: Any, state: Any
) -> Tensor:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, path: str) -> None:
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.path = path
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"tg.load: {self.path!r} needs {module}.{name} to load; only state dicts "
            "(tensors in dicts, lists and tuples) can be read from a PyTorch checkpoint, since "
            "loading anything else would run code from the file. Save model.state_dict(), "
            "not the model object."
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"tg.load: unknown persistent id {pid!r} in {self.path!r}")
        _, storage_type, key, _location, _numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(
                f"tg.load: unsupported storage type {storage_type!r} in {self.path!r}"
            )
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            if storage_type.dtype == "bfloat16":
                arr = _bfloat16_to_float32(raw)
            else:
                arr = np.frombuffer(raw, dtype=np.dtype(storage_type.dtype).newbyteorder("<"))
                arr = arr.astype(arr.dtype.newbyteorder("="))
            self.storages[key] = arr
        return self.storages[key]


def is_torch_checkpoint(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("data.pkl") for n in z.namelist())


def load_torch(path: str) -> Any:
    """The state dict saved by `torch.save` at `path`, with tracegrad tensors."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next(n for n in names if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in names and z.read(order).decode().strip() != "little":
            raise ValueError(f"tg.load: {path!r} was saved on a big-endian machine")
        with z.open(pkl) as f:
            return _Unpickler(f, z, prefix, path).load()


__all__ = ["is_torch_checkpoint", "load_torch"]
