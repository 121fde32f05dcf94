"""`tg.save` / `tg.load`: state dicts as .npz files, never pickles.

A model's state dict (name -> Tensor) is stored as one array per name, so `np.load(path)` reads
it without tracegrad and a plain `np.savez(path, **arrays)` file (torchvision weights converted
as in docs/nn.md) loads as a state dict. Anything nested (an optimizer's state dict: dicts with
int keys, lists, numbers, tuples) is described by a JSON entry `__tracegrad__` whose leaves name
the arrays. Loading uses `allow_pickle=False`: a file cannot run code.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any

import numpy as np

from .tensor import Tensor

_META = "__tracegrad__"


def save(obj: Any, f: Any) -> None:
    """Save a state dict (or a nest of dicts/lists/tuples of Tensors, arrays, numbers and
    strings) to the .npz file `f` (a path or a binary file object)."""
    arrays: dict[str, np.ndarray] = {}

    def encode(x: Any, path: str) -> Any:
        if isinstance(x, Tensor):
            x = x.detach()._concrete("tg.save")
        if isinstance(x, np.ndarray):
            key = path if path and path not in arrays and path != _META else f"_{len(arrays)}"
            arrays[key] = np.array(x, order="C")  # (ascontiguousarray would make 0-d 1-d)
            return {"__array__": key}
        if isinstance(x, dict):
            items = []
            for k, v in x.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(f"tg.save: dict keys must be str or int, got {k!r}")
                items.append([k, encode(v, f"{path}/{k}" if path else str(k))])
            return {"__dict__": items, "ordered": isinstance(x, OrderedDict)}
        if isinstance(x, (list, tuple)):
            items = [encode(v, f"{path}/{i}") for i, v in enumerate(x)]
            return {"__tuple__": items} if isinstance(x, tuple) else items
        if isinstance(x, np.generic):
            x = x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            if isinstance(x, float) and not np.isfinite(x):
                return {"__float__": repr(x)}
            return x
        raise TypeError(
            f"tg.save: cannot store a {type(x).__name__} (at {path or 'the top'}); state dicts "
            "hold Tensors, arrays, numbers, strings, and dicts/lists/tuples of them. tracegrad "
            "never pickles objects."
        )

    tree = encode(obj, "")
    meta = json.dumps({"format": "tracegrad", "version": 1, "tree": tree})
    arrays[_META] = np.frombuffer(meta.encode(), dtype=np.uint8)
    if isinstance(f, (str, os.PathLike)):
        # any file name ("model.pth" as in PyTorch's tutorials): np.savez given a path would
        # append ".npz", so it writes into the open file
        with open(os.fspath(f), "wb") as fh:
            np.savez(fh, **arrays)
    else:
        np.savez(f, **arrays)


def load(
    f: Any, map_location: Any = None, weights_only: bool | None = None, mmap: Any = None
) -> Any:
    """Load what `tg.save` stored; a plain .npz of arrays loads as an OrderedDict of Tensors; a
    state dict saved by PyTorch's `torch.save` loads without PyTorch and without running code
    from the file (tracegrad/torch_format.py).

    `weights_only` is accepted as PyTorch's: tracegrad's files hold no code, so both values
    load the same. `map_location` may be "cpu" (or a function/dict, as PyTorch's, not applied);
    tensors load on the CPU; move them with `.to(...)`. `mmap` is accepted and ignored."""
    if isinstance(f, (str, os.PathLike)):
        from .torch_format import is_torch_checkpoint, load_torch

        if is_torch_checkpoint(os.fspath(f)):
            return load_torch(os.fspath(f))  # a state dict saved by torch.save: no code runs
    with np.load(f, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = arrays.pop(_META, None)
    if meta is None:
        return OrderedDict((k, Tensor(np.array(v))) for k, v in arrays.items())
    info = json.loads(meta.tobytes().decode())
    if info.get("format") != "tracegrad" or info.get("version") != 1:
        raise ValueError(f"tg.load: {f!r} is not a tracegrad file of a known version")

    def decode(x: Any) -> Any:
        if isinstance(x, list):
            return [decode(v) for v in x]
        if isinstance(x, dict):
            if "__array__" in x:
                return Tensor(np.array(arrays[x["__array__"]]))
            if "__tuple__" in x:
                return tuple(decode(v) for v in x["__tuple__"])
            if "__float__" in x:
                return float(x["__float__"])
            items = [(k, decode(v)) for k, v in x["__dict__"]]
            return OrderedDict(items) if x.get("ordered") else dict(items)
        return x

    return decode(info["tree"])
