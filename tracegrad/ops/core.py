"""The op table's machinery: `OpDef`, abstract values, dtype promotion, `unbroadcast`.

An op is one `OpDef`: its numpy `forward`, its shape/dtype rule (`abstract`), one VJP rule per
input and, for elementwise ops, a scalar lowering template. Everything that runs an op (eager
dispatch in `tensor.py`, the tracer, the reference interpreter) reads it from here.

This package imports nothing else of tracegrad's. Calling an `OpDef` (`mul(x, y)`) goes through
`hooks.dispatch`, which the Tensor layer installs when it is imported; that keeps the op table at
the bottom of the dependency graph while VJP rules are still written with tracegrad ops::

    mul = defop("mul", ..., vjp=(lambda g, out, x, y: mul(g, y),
                                 lambda g, out, x, y: mul(g, x)))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# When BLAS last ran (an eager matmul or convolution, a compiled program's BLAS step).
# OpenBLAS's threads spin for about 0.1 s after each call, and Numba's parallel loops started
# meanwhile fight them for the cores; worse, Numba's OpenMP threads then spin in turn and slow
# the next BLAS call. Measured on the 2-core machine, an MLP loop with `tg.jit(model)` and
# `tg.jit(opt.step)`: the update's parallel loops 3.3 ms vs 0.9 ms serial, and the next
# forward 11.7 ms vs 6.3 ms. So compiled loops run serially for that long after BLAS
# (`blas_recent`; codegen/driver.py), as programs that call BLAS themselves always do.
BLAS_SPIN_SECONDS = 0.1
_blas_clock = [0.0]


def note_blas() -> None:
    _blas_clock[0] = time.perf_counter()


def blas_recent() -> bool:
    return time.perf_counter() - _blas_clock[0] < BLAS_SPIN_SECONDS


Shape = tuple[int, ...]


class Hooks:
    """Filled in by `tracegrad.tensor`: how to run an op on Tensors, and how to move an array
    to a device (`to_device`'s forward)."""

    dispatch: Callable[..., Any] | None = None
    move: Callable[..., Any] | None = None


hooks = Hooks()


# --------------------------------------------------------------------------------------------
# abstract values


class Aval:
    """Shape and dtype of an array whose data is not needed (or not known yet)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: Shape, dtype: np.dtype) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Aval) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))

    def __repr__(self) -> str:
        return f"{short_dtype(self.dtype)}{list(self.shape)}".replace(" ", "")


_SHORT = {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "bool": "bool"}


def short_dtype(dtype: np.dtype) -> str:
    return _SHORT.get(np.dtype(dtype).name, np.dtype(dtype).name)


class SymbolicNumber:
    """A Python number read from user state while tracing whose value may change between
    calls (an optimizer's learning rate: `trace/pystate.py`). Ops treat it as a number of its
    value's type; the tracer turns it into a runtime input of the tape."""

    __slots__ = ()
    value: Any


def is_scalar(x: Any) -> bool:
    """A Python (or numpy) number: an op input that is a literal, not an array."""
    return isinstance(x, (bool, int, float, np.generic, SymbolicNumber))


# --------------------------------------------------------------------------------------------
# dtypes and promotion (PyTorch's rules)
#
# Categories order bool < integer < floating. Within one category the wider type wins. Across
# categories the higher category wins *and keeps its own width* (int64 + float32 -> float32,
# where numpy says float64). Zero-dim arrays only decide the result when they are of a higher
# category than every dimensioned input; Python numbers likewise, and then they bring the
# default type of their category (float32, int64). So float32_tensor * 2.0 stays float32.

DEFAULT_FLOAT = np.dtype(np.float32)
DEFAULT_INT = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)


def category(dtype: np.dtype) -> int:
    kind = dtype.kind
    if kind == "b":
        return 0
    if kind in "iu":
        return 1
    if kind == "f":
        return 2
    raise TypeError(
        f"tracegrad: unsupported dtype {dtype}; use float32, float64, int64, int32 or bool"
    )


def _scalar_category(x: Any) -> int:
    if isinstance(x, SymbolicNumber):
        x = x.value  # its type is guarded (trace/pystate.py): the category cannot change
    if isinstance(x, (bool, np.bool_)):
        return 0
    if isinstance(x, (int, np.integer)):
        return 1
    return 2


_CATEGORY_DEFAULT = (BOOL, DEFAULT_INT, DEFAULT_FLOAT)
_promote_cache: dict[tuple[np.dtype, np.dtype], np.dtype] = {}


def promote(a: np.dtype | None, b: np.dtype) -> np.dtype:
    if a is None or a == b:
        return b
    key = (a, b)
    hit = _promote_cache.get(key)
    if hit is None:
        ca, cb = category(a), category(b)
        if ca != cb:
            hit = a if ca > cb else b
        else:
            hit = np.promote_types(a, b)
        _promote_cache[key] = hit
    return hit


_KIND_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}
_PY_CATEGORY = {bool: 0, int: 1, float: 2}


def result_type(*xs: Any) -> np.dtype:
    """The dtype of an elementwise op over arrays/avals and Python numbers, as PyTorch does it."""
    # Fast path, the common eager case: arrays of one dtype, Python numbers of no higher
    # category (x * 2.0, x + y). Anything else takes the general rule below.
    dtype = None
    number_category = -1
    for x in xs:
        c = _PY_CATEGORY.get(type(x))
        if c is not None:
            if c > number_category:
                number_category = c
            continue
        d = getattr(x, "dtype", None)
        if d is None or (dtype is not None and d != dtype):
            return _result_type_general(xs)
        dtype = d
    if dtype is not None and number_category <= _KIND_CATEGORY.get(dtype.kind, -1):
        return dtype
    return _result_type_general(xs)


def _result_type_general(xs: tuple) -> np.dtype:
    dim = None
    zero = None
    scalar_cat = -1
    for x in xs:
        if is_scalar(x):
            scalar_cat = max(scalar_cat, _scalar_category(x))
        elif x.ndim > 0:
            dim = promote(dim, x.dtype)
        else:
            zero = promote(zero, x.dtype)
    res = dim
    if zero is not None and (res is None or category(zero) > category(res)):
        res = zero
    if scalar_cat >= 0 and (res is None or scalar_cat > category(res)):
        res = _CATEGORY_DEFAULT[scalar_cat]
    return res


def float_type(dtype: np.dtype) -> np.dtype:
    """Floating ops (exp, sqrt, true division) on integers or bools give the default float."""
    return dtype if dtype.kind == "f" else DEFAULT_FLOAT


def aval_of(x: Any) -> Any:
    """Arrays and avals keep shape and dtype; Python numbers stay as they are."""
    if is_scalar(x):
        return x
    return Aval(x.shape, x.dtype)


def shape_of(x: Any) -> Shape:
    return () if is_scalar(x) else tuple(x.shape)


# --------------------------------------------------------------------------------------------
# OpDef and the table


def _always(e: Any) -> bool:
    return True


@dataclass(frozen=True)
class Call:
    """How compiled CPU code runs a non-loop op (`OpDef.call`).

    applies -- applies(eqn) -> bool: the equations this covers (params, dtypes, sizes); the
               others run as Python steps with the numpy forward
    source  -- source(eqn, ins, out, dims) -> the Numba statements that assign the result to
               the name `out`; `ins` are the names of the equation's inputs (arrays, or numbers
               where the input is 0-d or a literal), `dims` the names of the result's sizes.
               None: the call runs in numpy between compiled segments, through `forward_into`
               (matmul: runtime/executor.py says why)
    """

    applies: Callable[[Any], bool] = _always
    source: Callable[..., list[str]] | None = None


def element_loops(array: str, rank: int, statement: str) -> list[str]:
    """Numba source: `statement` for every element of `array` (a name), as a loop nest over
    its shape, with `{at}` in the statement replaced by the element's index. Generated code
    uses it where a numpy construct compiles slowly in Numba (slice assignment, array
    expressions: docs/compiler.md)."""
    at = ", ".join(f"c{d}" for d in range(rank)) or "()"
    lines = [f"{'    ' * d}for c{d} in range({array}.shape[{d}]):" for d in range(rank)]
    return [*lines, "    " * rank + statement.replace("{at}", at)]


@dataclass(frozen=True)
class Reduction:
    """How a reduction accumulates in a fused loop: `acc = init; acc <- combine(acc, x)`, and the
    result is `finish`. Both backends write these templates; a new reduction of this form touches
    only its OpDef paragraph.

    init     -- the start value in integer and in floating loops (source text)
    combine  -- statement template folding `{x}` into `{acc}` (also used to fold two partial
                accumulators, `{x}` then being the second), in a form Numba's `prange` knows as
                a reduction (`+=`, `*=`, `max(acc, x)`, `min(acc, x)`)
    nan_ignored -- `combine` drops a NaN `x` (Numba's `max`/`min` do): where it folds a
                `prange` loop's scalar accumulator, the CPU writer counts NaNs beside it and
                makes the result NaN, as numpy and PyTorch do
    fold     -- the statement for every other accumulator (rows, columns, CUDA threads), where
                any form works: None means `combine`; max/min put a NaN into the accumulator
                and keep it there (a select LLVM still vectorizes: 2.9 vs 2.1 ms for the row
                maxima of 4096x1000 float32, against 5.2 for an if/elif)
    finish   -- expression template of the result from `{acc}` and `{count}` (the number of
                reduced elements, source text): mean divides
    floats_only -- the start is +-inf: only floating inputs are fused (others: Python steps)
    atomic   -- on CUDA a 0-d result is accumulated with atomic adds across blocks
    shifted  -- log-sum-exp form: the result is `m + log(sum(exp(x - m)))` with `m` the max of
                the reduced elements (0 where it is infinite). The code writers carry a running
                max and a rescaled sum (or a max pass, then a sum pass); `combine` is unused.
    """

    init: tuple[str, str] = ("0", "0.0")
    combine: str = "{acc} += {x}"
    nan_ignored: bool = False
    fold: str | None = None
    finish: str = "{acc}"
    floats_only: bool = False
    atomic: bool = False
    shifted: bool = False

    def start(self, dtype: np.dtype) -> str:
        return self.init[1] if np.dtype(dtype).kind == "f" else self.init[0]

    def result(self, acc: str, count: str) -> str:
        return self.finish.format(acc=acc, count=count)


def numba_dtype(dtype: np.dtype) -> str:
    """The numpy dtype as Numba source (`np.float32`, `np.bool_`)."""
    dtype = np.dtype(dtype)
    return "np.bool_" if dtype.kind == "b" else f"np.{dtype.name}"


@dataclass(eq=False)
class OpDef:
    """One primitive: everything tracegrad knows about it, in one place.

    name      -- the name on the tape (`mul`)
    forward   -- numpy implementation: forward(*arrays_or_numbers, **params) -> ndarray
    abstract  -- shape/dtype rule: abstract(*avals_or_numbers, **params) -> Aval; raises a
                 ValueError naming the op and the shapes when the inputs do not fit
    vjp       -- one rule per input: rule(g, out, *inputs, **params) -> cotangent of that input,
                 written with tracegrad ops; `None` where the input has no gradient
    saves     -- which inputs the VJP rules read (the rest are handed to them as `Aval`s)
    saves_out -- whether the VJP rules read `out`
    grad_name -- the PyTorch name of the backward node (`MulBackward0`), or a callable of the
                 op's inputs that picks one (pow by a number vs pow by a tensor)
    kind      -- elementwise | reduce | shape | index | matmul | creation
    lower     -- how a fused loop computes one element (ops with one are elementwise for
                 fusion): a template over the inputs' scalar values (`"({0} * {1})"`), or a
                 function lower(eqn, operands, literal, fast) -> expression where the code
                 depends on the equation (pow by a constant, clamp's bounds, float32 helpers
                 on the CPU when `fast`); `literal(number)` makes a literal slot
    cheap     -- a few instructions (no division, no transcendental function): fusion
                 recomputes such a value where it is read rather than storing it
    reduction -- for reductions fused into loops as accumulators: a `Reduction`
    out_dtype -- fast dtype rule for eager mode (the forward's result is cast to it); None when
                 numpy's result dtype is already right
    variadic  -- takes any number of inputs (cat); its single VJP rule gets `argnum=i`
    forward_into -- optional: forward_into(out, *inputs, **params) writes the result into `out`
                 (C-contiguous, the result's shape and dtype; inputs of that dtype). The
                 compiled executor uses it for the large results of the ops it runs in numpy
                 (matmul, im2col) so that their arrays are reused from call to call
    call      -- for ops that compiled CPU code runs as a library call rather than a loop: a
                 `Call` (which equations, and the Numba source); others run as Python steps
    new_array -- the forward always returns memory of its own (never a view of an input): the
                 executor's aliasing and buffer-donation rules rely on it
    uses_blas -- the forward calls BLAS (OpenBLAS's threads: runtime/executor.py)
    promotes  -- the inputs whose dtypes make the dtype the loop computes in (and Python
                 numbers are cast to); None: all (`where`'s condition takes no part)
    decompose -- for a fused eager op (a Numba kernel where PyTorch has a native one): the same
                 function written with other ops, `decompose(*inputs, **params)`. Tracing and
                 the GPU run it instead of the op (fusion compiles the parts), and so does eager
                 mode when the op has no `vjp` and its result must be differentiated (an input
                 gradient's kernel under `create_graph=True`)
    """

    name: str
    forward: Callable[..., np.ndarray]
    abstract: Callable[..., Aval]
    vjp: tuple[Callable[..., Any] | None, ...] | None = None
    saves: tuple[int, ...] = ()
    saves_out: bool = False
    grad_name: str | Callable[..., str] = ""
    kind: str = "elementwise"
    lower: str | None = None
    out_dtype: Callable[..., np.dtype] | None = None
    variadic: bool = False
    forward_into: Callable[..., None] | None = None
    call: Call | None = None
    cheap: bool = False
    reduction: Reduction | None = None
    new_array: bool = False
    uses_blas: bool = False
    promotes: tuple[int, ...] | None = None
    decompose: Callable[..., Any] | None = None

    def compute_dtype(self, inputs: tuple) -> np.dtype:
        """The dtype a fused loop computes this op in, for these inputs (Vars or numbers)."""
        chosen = inputs if self.promotes is None else [inputs[i] for i in self.promotes]
        return result_type(*chosen)

    def __call__(self, *args: Any, **params: Any) -> Any:
        return hooks.dispatch(self, args, params)

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None and any(r is not None for r in self.vjp)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


OPS: dict[str, OpDef] = {}


def defop(name: str, **fields: Any) -> OpDef:
    if name in OPS:
        raise ValueError(f"op {name!r} is defined twice")
    op = OpDef(name=name, **fields)
    if not op.grad_name:
        op.grad_name = "".join(p.capitalize() for p in name.split("_")) + "Backward0"
    OPS[name] = op
    return op


def shape_error(op: str, msg: str, *shapes: Any, fix: str = "") -> ValueError:
    shown = ", ".join(str(tuple(s)) for s in shapes)
    text = f"{op}: {msg} (shapes {shown})"
    if fix:
        text += f". {fix}"
    return ValueError(text)


def broadcast_shapes(op: str, *shapes: Shape) -> Shape:
    """numpy/PyTorch broadcasting, with an error that names the op and both shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        size = 1
        for s in shapes:
            if len(s) >= -axis:
                d = s[axis]
                if d != 1:
                    if size != 1 and size != d:
                        raise shape_error(
                            op,
                            f"shapes do not broadcast: size {size} vs {d} at dim {axis}",
                            *shapes,
                            fix="Make the sizes equal, or 1 where the tensor should repeat "
                            "(reshape/unsqueeze)",
                        )
                    size = d
        out.append(size)
    return tuple(out)


def normalize_dims(op: str, dim: Any, ndim: int) -> tuple[int, ...]:
    """`dim=None|int|tuple` -> sorted tuple of non-negative axes; None means all."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        lim = max(ndim, 1)
        if not -lim <= d < lim:
            raise IndexError(
                f"{op}: dim {d} is out of range for a tensor with {ndim} dimensions "
                f"(expected a dim in [{-lim}, {lim - 1}])"
            )
        d = int(d) % lim
        if d in out:
            raise ValueError(f"{op}: dim {d} appears more than once in dim={dim}")
        out.append(d)
    return tuple(sorted(out)) if ndim else ()


# --------------------------------------------------------------------------------------------
# undoing broadcasting: the one helper every VJP rule uses


def unbroadcast(g: Any, shape: Shape) -> Any:
    """Sum a cotangent `g` back down to `shape`, undoing numpy broadcasting.

    Leading dims that broadcasting added are summed away; dims where `shape` has size 1 and
    `g` does not are summed with keepdim. Written with tracegrad ops so it records and traces.
    """
    gshape = g.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    dims = list(range(lead))
    for i, size in enumerate(shape):
        if size == 1 and gshape[lead + i] != 1:
            dims.append(lead + i)
    if dims:
        g = OPS["sum"](g, dims=tuple(dims), keepdim=False)
    if g.shape != shape:
        g = OPS["reshape"](g, shape=shape)
    return g
