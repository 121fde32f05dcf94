"""`repr(tensor)` exactly as PyTorch prints it.

This follows PyTorch's `torch/_tensor_str.py` rule for rule: one formatter per tensor decides
between integer mode (`9.`), fixed point with `precision` digits (`75.6667`) and scientific
notation (when the largest/smallest non-zero magnitude ratio exceeds 1000, the largest exceeds
1e8, or the smallest is below 1e-4); every element is padded to the widest one; rows wrap at
`linewidth`; more than `threshold` elements are summarized with `...`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class PrintOptions:
    precision = 4
    threshold = 1000
    edgeitems = 3
    linewidth = 80
    sci_mode: bool | None = None


PRINT_OPTS = PrintOptions()


def set_printoptions(
    precision: int | None = None,
    threshold: int | None = None,
    edgeitems: int | None = None,
    linewidth: int | None = None,
    sci_mode: bool | None = None,
) -> None:
    """As `torch.set_printoptions`."""
    if precision is not None:
        PRINT_OPTS.precision = precision
    if threshold is not None:
        PRINT_OPTS.threshold = threshold
    if edgeitems is not None:
        PRINT_OPTS.edgeitems = edgeitems
    if linewidth is not None:
        PRINT_OPTS.linewidth = linewidth
    PRINT_OPTS.sci_mode = sci_mode


class _Formatter:
    def __init__(self, values: np.ndarray) -> None:
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        precision = PRINT_OPTS.precision
        flat = values.reshape(-1)
        if not self.floating:
            for v in flat.tolist():
                self.max_width = max(self.max_width, len(_plain(v)))
            return
        finite = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if finite.size == 0:
            return
        absvals = np.abs(finite)
        lo = float(absvals.min())
        hi = float(absvals.max())
        vals = finite.tolist()
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        if PRINT_OPTS.sci_mode is None:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4
        else:
            self.sci_mode = PRINT_OPTS.sci_mode
        if self.sci_mode:
            for v in vals:
                self.max_width = max(self.max_width, len(f"{v:.{precision}e}"))
        elif self.int_mode:
            # integer-valued floats print as "9." : one more column for the point
            for v in vals:
                self.max_width = max(self.max_width, len(f"{v:.0f}") + 1)
        else:
            for v in vals:
                self.max_width = max(self.max_width, len(f"{v:.{precision}f}"))

    def format(self, value: Any) -> str:
        precision = PRINT_OPTS.precision
        if self.floating:
            if self.sci_mode:
                ret = f"{value:{self.max_width}.{precision}e}"
            elif self.int_mode:
                ret = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    ret += "."
            else:
                ret = f"{value:.{precision}f}"
        else:
            ret = _plain(value)
        return (self.max_width - len(ret)) * " " + ret


def _plain(v: Any) -> str:
    return str(v)


def _summarized(a: np.ndarray) -> np.ndarray:
    """The elements that a summarized print shows (PyTorch's get_summarized_data)."""
    edge = PRINT_OPTS.edgeitems
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        return np.concatenate((a[:edge], a[-edge:])) if a.shape[0] > 2 * edge else a
    if a.shape[0] > 2 * edge:
        rows = [a[i] for i in range(edge)] + [a[i] for i in range(len(a) - edge, len(a))]
    else:
        rows = list(a)
    return np.stack([_summarized(r) for r in rows])


def _vector_str(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    element_length = fmt.max_width + 2
    per_line = max(1, int(math.floor((PRINT_OPTS.linewidth - indent) / element_length)))
    edge = PRINT_OPTS.edgeitems
    if summarize and a.shape[0] > 2 * edge:
        data = (
            [fmt.format(v) for v in a[:edge].tolist()]
            + [" ..."]
            + [fmt.format(v) for v in a[-edge:].tolist()]
        )
    else:
        data = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(data[i : i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _str_with(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector_str(a, indent, summarize, fmt)
    edge = PRINT_OPTS.edgeitems
    if summarize and a.shape[0] > 2 * edge:
        slices = (
            [_str_with(a[i], indent + 1, summarize, fmt) for i in range(edge)]
            + ["..."]
            + [_str_with(a[i], indent + 1, summarize, fmt) for i in range(len(a) - edge, len(a))]
        )
    else:
        slices = [_str_with(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0])]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(slices) + "]"


def tensor_str(a: np.ndarray, indent: int) -> str:
    if a.size == 0:
        return "[]"
    summarize = a.size > PRINT_OPTS.threshold
    fmt = _Formatter(_summarized(a) if summarize else a)
    return _str_with(a, indent, summarize, fmt)


def dtype_name(dtype: np.dtype) -> str:
    return "tracegrad." + np.dtype(dtype).name


_DEFAULT_DTYPES = (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_))


def tensor_repr(t: Any) -> str:
    prefix = "tensor("
    indent = len(prefix)
    a = t._data
    suffixes = []
    if type(a) is not np.ndarray:  # a CUDA tensor: print a host copy, and say where it lives
        a = t._host()
        suffixes.append(f"device='{t.device}'")
    if a.size == 0:
        if a.ndim != 1:
            suffixes.append("size=" + str(tuple(a.shape)))
        if a.dtype != np.float32:
            suffixes.append("dtype=" + dtype_name(a.dtype))
        body = "[]"
    else:
        if a.dtype not in _DEFAULT_DTYPES:
            suffixes.append("dtype=" + dtype_name(a.dtype))
        body = tensor_str(a, indent)
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, indent)


def _add_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    parts = [text]
    last_line_len = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)
