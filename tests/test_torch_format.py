"""tg.load reads state dicts saved by torch.save (its zip format) without PyTorch and without
running code from the file. The files are written here the way torch.save writes them (a
pickle that rebuilds each tensor with torch._utils._rebuild_tensor_v2 from a storage, the
storages as raw little-endian bytes), through stand-in `torch` modules."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn

_KINDS = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "int64": "LongStorage",
    "bool": "BoolStorage",
    "bfloat16": "BFloat16Storage",
}


class _Storage:
    def __init__(self, key, kind, raw, numel):
        self.key, self.kind, self.raw, self.numel = key, kind, raw, numel


class _T:
    """A tensor as torch pickles it: a view (offset, size, stride) of a storage."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce_ex__(self, protocol):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while saving")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in _KINDS.values():
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
    torch._utils = utils
    return {"torch": torch, "torch._utils": utils}


def torch_save(obj, path, extra_globals=()):
    mods = _fake_torch()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    storages = {}
    try:

        class P(pickle.Pickler):
            def persistent_id(self, o):
                if isinstance(o, _Storage):
                    storages[o.key] = o.raw
                    return ("storage", getattr(mods["torch"], o.kind), o.key, "cpu", o.numel)
                return None

        buf = io.BytesIO()
        P(buf, protocol=2).dump(obj)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", buf.getvalue())
        z.writestr("model/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"model/data/{key}", raw)
        z.writestr("model/version", "3\n")


def _tensor(arr, key):
    arr = np.array(arr, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    kind = _KINDS[arr.dtype.name]
    st = _Storage(key, kind, arr.astype(arr.dtype.newbyteorder("<")).tobytes(), arr.size)
    stride = tuple(s // arr.itemsize for s in arr.strides)
    return _T(st, 0, arr.shape, stride)


def test_a_state_dict_saved_by_torch_loads_into_a_model(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    r = np.random.default_rng(0)
    sd = OrderedDict()
    for i, (name, t) in enumerate(model.state_dict().items()):
        a = t.numpy()
        value = r.standard_normal(a.shape).astype(a.dtype) if a.dtype.kind == "f" else a + 7
        sd[name] = (_tensor(value, str(i)), value)
    path = os.path.join(tmp_path, "model.pth")
    torch_save(OrderedDict((k, v[0]) for k, v in sd.items()), path)
    loaded = tg.load(path, weights_only=True)
    assert list(loaded) == list(sd)
    for k, (_, value) in sd.items():
        assert loaded[k].dtype == value.dtype
        np.testing.assert_array_equal(loaded[k].numpy(), value)
    model.load_state_dict(loaded)
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), sd["0.weight"][1])


def test_views_of_one_storage_bfloat16_and_scalars(tmp_path):
    base = np.arange(12, dtype=np.float32)
    st = _Storage("0", "FloatStorage", base.tobytes(), 12)
    transposed = _T(st, 2, (3, 2), (1, 3))  # a non-contiguous view at an offset
    scalar = _T(_Storage("1", "LongStorage", np.int64(5).tobytes(), 1), 0, (), ())
    bf = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    bf_raw = (bf.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    bf16 = _T(_Storage("2", "BFloat16Storage", bf_raw, 3), 0, (3,), (1,))
    path = os.path.join(tmp_path, "t.pt")
    torch_save({"a": transposed, "n": scalar, "b": bf16, "nested": [transposed, 3]}, path)
    out = tg.load(path)
    want = np.lib.stride_tricks.as_strided(base[2:], (3, 2), (4, 12))
    np.testing.assert_array_equal(out["a"].numpy(), want)
    assert out["n"].item() == 5 and out["n"].dtype == tg.int64
    np.testing.assert_array_equal(out["b"].numpy(), bf)
    assert out["nested"][1] == 3 and out["nested"][0].shape == (3, 2)


def test_code_in_a_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = os.path.join(tmp_path, "evil.pth")
    torch_save({"x": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|nt.system"):
        tg.load(path)
