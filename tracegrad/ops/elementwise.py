"""Elementwise primitives: one paragraph per op.

Each op lists its numpy forward, its dtype rule (shapes broadcast), one VJP rule per input and
its scalar lowering template (`{0}`, `{1}` are the inputs' scalar values in a fused loop).
VJP rules use tracegrad ops only, so they record, trace, and differentiate again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .core import (
    BOOL,
    Aval,
    broadcast_shapes,
    defop,
    float_type,
    is_scalar,
    result_type,
    shape_of,
    unbroadcast,
)
from .kernels import (
    erf_array,
    exp_array,
    gelu_array,
    gelu_grad_array,
    select_into,
    select_scalar_x_into,
    select_scalar_y_into,
)
from .shape import expand, full

try:  # numpy >= 2 keeps the floating-point error state in a context variable
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

    _QUIET_STATE = _make_extobj(divide="ignore", invalid="ignore", over="ignore")
except ImportError:  # pragma: no cover - numpy 1.x
    _extobj_contextvar = None


def quiet(forward: Any) -> Any:
    """Run a numpy forward without floating-point warnings: log(0) = -inf and 0/0 = nan are
    results, as in PyTorch, not events. (`.ufunc` keeps the raw ufunc for in-place updates.)

    Setting numpy's context variable directly does what `np.errstate` does at a tenth of the
    cost, which matters for eager ops on small tensors; older numpy uses `np.errstate`."""
    if _extobj_contextvar is not None:

        def run(*args: Any, **params: Any) -> Any:
            token = _extobj_contextvar.set(_QUIET_STATE)
            try:
                return forward(*args, **params)
            finally:
                _extobj_contextvar.reset(token)

    else:

        def run(*args: Any, **params: Any) -> Any:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                return forward(*args, **params)

    run.ufunc = forward
    run.__name__ = getattr(forward, "__name__", "forward")
    return run


# --------------------------------------------------------------------------------------------
# lowerings that depend on the equation (OpDef.lower as a callable: ops/core.py)


def f32_fast(generic: str, f32: str) -> Any:
    """The template `generic`; in float32 loops on the CPU (`fast`), `f32`, which calls the
    vectorizable helpers of codegen/numba_helpers.py instead of libm's expf/tanhf/erf (libm
    calls stop LLVM from vectorizing a loop). The CUDA target asks for `fast=False`."""

    def lower(e: Any, operands: list, literal: Any, fast: bool) -> str:
        return (f32 if fast and e.out.dtype == np.float32 else generic).format(*operands)

    lower.template = generic
    return lower


# pow by a small constant exponent is a different, much cheaper operation (a multiply instead
# of a call to powf): the exponent is then part of the source, like which dims broadcast
_POW_BY = {
    2: "({0} * {0})",
    3: "({0} * {0} * {0})",
    1: "{0}",
    0.5: "math.sqrt({0})",
    -1: "(1.0 / {0})",
}


def _lower_pow(e: Any, operands: list, literal: Any, fast: bool) -> str:
    y = e.inputs[1]
    if is_scalar(y) and not isinstance(y, bool) and y in _POW_BY:
        return _POW_BY[y].format(operands[0])
    return f"({operands[0]} ** {operands[1]})"


def _lower_clamp(e: Any, operands: list, literal: Any, fast: bool) -> str:
    # the bounds are parameters (None: no bound), written as literal slots
    expr = operands[0]
    if e.params["min"] is not None:
        expr = f"max({expr}, {literal(e.params['min'])})"
    if e.params["max"] is not None:
        expr = f"min({expr}, {literal(e.params['max'])})"
    return expr


def _lower_gelu(e: Any, operands: list, literal: Any, fast: bool) -> str:
    x = operands[0]
    if e.params.get("approximate") == "tanh":
        return (
            f"(0.5 * {x} * (1.0 + math.tanh(0.7978845608028654 * ({x} + 0.044715 * {x} * {x} "
            f"* {x}))))"
        )
    if fast and e.out.dtype == np.float32:
        return (
            f"(np.float32(0.5) * {x} * (np.float32(1.0) + erf_f32({x} * np.float32(0.70710677))))"
        )
    return f"(0.5 * {x} * (1.0 + math.erf({x} * 0.7071067811865476)))"


def _same(*xs: Any, **params: Any) -> np.dtype:
    return result_type(*xs)


def _floating(*xs: Any, **params: Any) -> np.dtype:
    return float_type(result_type(*xs))


def _boolean(*xs: Any, **params: Any) -> np.dtype:
    return BOOL


def _abstract(dtype_rule: Any, name: str) -> Any:
    def abstract(*xs: Any, **params: Any) -> Aval:
        shape = broadcast_shapes(name, *(shape_of(x) for x in xs))
        return Aval(shape, dtype_rule(*xs, **params))

    return abstract


def unary(name: str, forward: Any, vjp: Any, lower: Any, *, dtype: Any = _floating, **kw: Any):
    return defop(
        name,
        forward=forward,
        abstract=_abstract(dtype, name),
        out_dtype=dtype,
        vjp=(vjp,),
        lower=lower,
        **kw,
    )


def binary(name: str, forward: Any, vjp: Any, lower: Any, *, dtype: Any = _same, **kw: Any):
    return defop(
        name,
        forward=forward,
        abstract=_abstract(dtype, name),
        out_dtype=dtype,
        vjp=vjp,
        lower=lower,
        **kw,
    )


def zeros_like(x: Any) -> Any:
    """A constant of zeros shaped and typed as `x` (multiplying by 0 would carry NaNs through)."""
    return expand(full(x, value=0.0, shape=()), shape=x.shape)


# --------------------------------------------------------------------------------------------
# arithmetic. Every VJP unbroadcasts its cotangent to the input's shape.

add = binary(
    "add",
    np.add,
    (
        lambda g, out, x, y: unbroadcast(g, x.shape),
        lambda g, out, x, y: unbroadcast(g, y.shape),
    ),
    "({0} + {1})",
    cheap=True,
)

sub = binary(
    "sub",
    np.subtract,
    (
        lambda g, out, x, y: unbroadcast(g, x.shape),
        lambda g, out, x, y: unbroadcast(neg(g), y.shape),
    ),
    "({0} - {1})",
    cheap=True,
)

mul = binary(
    "mul",
    np.multiply,
    (
        lambda g, out, x, y: unbroadcast(mul(g, y), x.shape),
        lambda g, out, x, y: unbroadcast(mul(g, x), y.shape),
    ),
    "({0} * {1})",
    saves=(0, 1),
    cheap=True,
)

# d(x/y)/dy = -x/y**2 = -out/y: reading `out` saves recomputing x/y.
div = binary(
    "div",
    quiet(np.true_divide),
    (
        lambda g, out, x, y: unbroadcast(div(g, y), x.shape),
        lambda g, out, x, y: unbroadcast(neg(div(mul(g, out), y)), y.shape),
    ),
    "({0} / {1})",
    dtype=_floating,
    saves=(1,),
    saves_out=True,
)

# remainder (PyTorch's `%` and `torch.remainder`): the result has the divisor's sign, as in
# Python and numpy. d/dx = 1, d/dy = -floor(x / y), written -(x - out) / y (no floor op; exact
# up to rounding), 0 almost everywhere's second derivative
remainder = binary(
    "remainder",
    quiet(np.remainder),
    (
        lambda g, out, x, y: unbroadcast(g, x.shape),
        lambda g, out, x, y: unbroadcast(neg(mul(g, div(sub(x, out), y))), y.shape),
    ),
    "({0} % {1})",
    saves=(0, 1),
    saves_out=True,
)

neg = unary("neg", np.negative, lambda g, out, x: neg(g), "(-{0})", dtype=_same, cheap=True)


def _pow_vjp_base(g: Any, out: Any, x: Any, y: Any) -> Any:
    # y * x**(y-1). Where y == 0 that is 0 except at x == 0, where it is 0 * inf = nan: there
    # (only there, so that higher derivatives stay right elsewhere) the gradient is 0.
    if isinstance(y, (int, float, np.number)):
        if y == 0:
            return zeros_like(x)
        if y == 1:
            return g
        return mul(g, mul(x if y == 2 else pow(x, y - 1), y))
    d = mul(y, pow(x, sub(y, 1)))
    d = where(logical_and(eq(y, 0), eq(x, 0)), 0.0, d)
    return unbroadcast(mul(g, d), x.shape)


def _pow_vjp_exponent(g: Any, out: Any, x: Any, y: Any) -> Any:
    # out * log(x), and 0 where x == 0 and y >= 0 (the limit), as PyTorch does
    d = where(logical_and(eq(x, 0), ge(y, 0)), 0.0, mul(out, log(x)))
    return unbroadcast(mul(g, d), y.shape)


def _pow_forward(x: Any, y: Any) -> np.ndarray:
    if type(y) is int and y < 0 and np.asarray(x).dtype.kind in "iu":
        raise ValueError("pow: integers to negative integer powers are not allowed; use x.float()")
    return np.power(x, y)


pow = binary(  # noqa: A001 - the op's name
    "pow",
    quiet(_pow_forward),
    (_pow_vjp_base, _pow_vjp_exponent),
    _lower_pow,
    saves=(0, 1),
    saves_out=True,
    grad_name=lambda args, params: "PowBackward1" if hasattr(args[1], "shape") else "PowBackward0",
)


def _split_ties(g: Any, x: Any, y: Any, win: Any) -> Any:
    # PyTorch's maximum/minimum: the winner takes g, a tie gives each side g/2
    share = add(win(x, y), mul(eq(x, y), 0.5))
    return mul(g, share)


maximum = binary(
    "maximum",
    np.maximum,
    (
        lambda g, out, x, y: unbroadcast(_split_ties(g, x, y, gt), x.shape),
        lambda g, out, x, y: unbroadcast(_split_ties(g, y, x, gt), y.shape),
    ),
    # a NaN on either side is the result (Numba's max(a, b) drops a NaN b), as np.maximum
    "({0} if ({0} > {1} or {0} != {0}) else {1})",
    saves=(0, 1),
    cheap=True,
)

minimum = binary(
    "minimum",
    np.minimum,
    (
        lambda g, out, x, y: unbroadcast(_split_ties(g, x, y, lt), x.shape),
        lambda g, out, x, y: unbroadcast(_split_ties(g, y, x, lt), y.shape),
    ),
    "({0} if ({0} < {1} or {0} != {0}) else {1})",
    saves=(0, 1),
    cheap=True,
)


# --------------------------------------------------------------------------------------------
# comparisons and logic: bool results, no gradient

eq = binary("eq", np.equal, None, "({0} == {1})", dtype=_boolean, cheap=True)
ne = binary("ne", np.not_equal, None, "({0} != {1})", dtype=_boolean, cheap=True)
lt = binary("lt", np.less, None, "({0} < {1})", dtype=_boolean, cheap=True)
le = binary("le", np.less_equal, None, "({0} <= {1})", dtype=_boolean, cheap=True)
gt = binary("gt", np.greater, None, "({0} > {1})", dtype=_boolean, cheap=True)
ge = binary("ge", np.greater_equal, None, "({0} >= {1})", dtype=_boolean, cheap=True)
logical_and = binary(
    "logical_and", np.logical_and, None, "({0} and {1})", dtype=_boolean, cheap=True
)
logical_or = binary("logical_or", np.logical_or, None, "({0} or {1})", dtype=_boolean, cheap=True)
logical_not = unary("logical_not", np.logical_not, None, "(not {0})", dtype=_boolean, cheap=True)
isnan = unary("isnan", np.isnan, None, "math.isnan({0})", dtype=_boolean)
isfinite = unary("isfinite", np.isfinite, None, "math.isfinite({0})", dtype=_boolean)


# --------------------------------------------------------------------------------------------
# where(cond, x, y): the cotangent goes to the side that was chosen

_SELECT_DTYPES = frozenset(map(np.dtype, (np.float32, np.float64, np.int32, np.int64, np.bool_)))
_SELECT_MIN = 4096  # below it np.where costs less than a kernel call


def _select_operand(v: Any, shape: tuple, dtype: np.dtype) -> Any:
    """`v` as a select kernel takes it: a flat array of `shape` and `dtype`, or a scalar of
    `dtype` that holds v's exact value; None where it cannot (np.where then runs)."""
    if isinstance(v, np.ndarray) and v.ndim > 0:
        if v.shape == shape and v.dtype == dtype and v.flags.c_contiguous:
            return v.reshape(-1)
        return None
    if not isinstance(v, (bool, int, float, np.generic)):
        return None
    try:
        with np.errstate(all="ignore"):
            s = dtype.type(v)
    except (OverflowError, ValueError):  # a value out of an integer dtype's range, nan
        return None
    exact, want = s.item(), v.item() if isinstance(v, np.generic) else v  # compared in Python
    return s if exact == want or (exact != exact and want != want) else None  # noqa: PLR0124


def _where_forward(c: Any, x: Any, y: Any) -> np.ndarray:
    """np.where's result; over arrays of one shape (and scalars) the select kernels of
    ops/kernels.py compute it, the same values without numpy's branch per element."""
    if (
        isinstance(c, np.ndarray)
        and c.dtype == np.bool_
        and c.size >= _SELECT_MIN
        and c.flags.c_contiguous
    ):
        dtype = result_type(x, y)
        if dtype in _SELECT_DTYPES:
            xs = _select_operand(x, c.shape, dtype)
            ys = _select_operand(y, c.shape, dtype)
            if xs is not None and ys is not None and (np.ndim(xs) or np.ndim(ys)):
                out = np.empty(c.shape, dtype)
                kernel = (
                    select_into
                    if np.ndim(xs) and np.ndim(ys)
                    else (select_scalar_y_into if np.ndim(xs) else select_scalar_x_into)
                )
                kernel(c.reshape(-1), xs, ys, out.reshape(-1))
                return out
    return np.where(c, x, y)


where = defop(
    "where",
    forward=_where_forward,
    abstract=lambda c, x, y: Aval(
        broadcast_shapes("where", shape_of(c), shape_of(x), shape_of(y)), result_type(x, y)
    ),
    out_dtype=lambda c, x, y: result_type(x, y),
    vjp=(
        None,
        lambda g, out, c, x, y: unbroadcast(where(c, g, 0.0), x.shape),
        lambda g, out, c, x, y: unbroadcast(where(c, 0.0, g), y.shape),
    ),
    saves=(0,),
    lower="({1} if {0} else {2})",
    promotes=(1, 2),
    grad_name="WhereBackward0",
    cheap=True,
)


# --------------------------------------------------------------------------------------------
# clamp(min, max) with number bounds: the gradient passes where min <= x <= max (inclusive, as
# PyTorch). Tensor bounds are composed from maximum/minimum in the Tensor layer.


def _clamp_forward(x: np.ndarray, *, min: Any, max: Any) -> np.ndarray:  # noqa: A002
    return np.clip(x, min, max)


def _clamp_vjp(g: Any, out: Any, x: Any, *, min: Any, max: Any) -> Any:  # noqa: A002
    if min is None:
        inside = le(x, max)
    elif max is None:
        inside = ge(x, min)
    else:
        inside = logical_and(ge(x, min), le(x, max))
    return where(inside, g, 0.0)


def _clamp_dtype(x: Any, lo: Any, hi: Any) -> np.dtype:
    return result_type(x, *(b for b in (lo, hi) if b is not None))


clamp = defop(
    "clamp",
    forward=_clamp_forward,
    abstract=lambda x, *, min, max: Aval(x.shape, _clamp_dtype(x, min, max)),
    out_dtype=lambda x, *, min, max: _clamp_dtype(x, min, max),
    vjp=(_clamp_vjp,),
    saves=(0,),
    lower=_lower_clamp,
    grad_name="ClampBackward1",
)


# --------------------------------------------------------------------------------------------
# unary math


def _sigmoid_forward(x: np.ndarray) -> np.ndarray:
    # stable for large |x|: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _exp_forward(x: Any) -> Any:
    if type(x) is np.ndarray and x.dtype == np.float32:
        return exp_array(x)  # float32 exp that vectorizes, as compiled loops use
    return np.exp(x)


exp = unary(
    "exp",
    quiet(_exp_forward),
    lambda g, out, x: mul(g, out),
    f32_fast("math.exp({0})", "exp_f32({0})"),
    saves_out=True,
)
log = unary("log", quiet(np.log), lambda g, out, x: div(g, x), "math.log({0})", saves=(0,))
log1p = unary(
    "log1p", quiet(np.log1p), lambda g, out, x: div(g, add(x, 1)), "math.log1p({0})", saves=(0,)
)
expm1 = unary(
    "expm1",
    quiet(np.expm1),
    lambda g, out, x: mul(g, add(out, 1)),
    "math.expm1({0})",
    saves_out=True,
)
sqrt = unary(
    "sqrt", quiet(np.sqrt), lambda g, out, x: div(g, mul(out, 2)), "math.sqrt({0})", saves_out=True
)
# d/dx x**-1/2 = -1/2 x**-3/2 = -1/2 out**3
rsqrt = unary(
    "rsqrt",
    quiet(lambda x: 1 / np.sqrt(x)),
    lambda g, out, x: mul(g, mul(pow(out, 3), -0.5)),
    "(1.0 / math.sqrt({0}))",
    saves_out=True,
)
sin = unary("sin", np.sin, lambda g, out, x: mul(g, cos(x)), "math.sin({0})", saves=(0,))
cos = unary("cos", np.cos, lambda g, out, x: neg(mul(g, sin(x))), "math.cos({0})", saves=(0,))
tan = unary(
    "tan",
    quiet(np.tan),
    lambda g, out, x: mul(g, add(mul(out, out), 1)),
    "math.tan({0})",
    saves_out=True,
)
tanh = unary(
    "tanh",
    np.tanh,
    lambda g, out, x: mul(g, sub(1, mul(out, out))),
    f32_fast("math.tanh({0})", "tanh_f32({0})"),
    saves_out=True,
)
sigmoid = unary(
    "sigmoid",
    _sigmoid_forward,
    lambda g, out, x: mul(g, mul(out, sub(1, out))),
    f32_fast(
        "(1.0 / (1.0 + math.exp(-{0})))", "(np.float32(1.0) / (np.float32(1.0) + exp_f32(-{0})))"
    ),
    saves_out=True,
)


def _scipy_erf() -> Any:
    """scipy.special.erf, imported on first use: importing scipy.special costs about a third
    of `import tracegrad`'s time, and only erf and exact GELU in float64 need it."""
    import scipy.special

    return scipy.special.erf


def _erf_forward(x: Any) -> Any:
    if type(x) is np.ndarray and x.dtype == np.float32:
        return erf_array(x)  # float32 erf that vectorizes, as compiled loops use
    return _scipy_erf()(x)


erf = unary(
    "erf",
    _erf_forward,
    lambda g, out, x: mul(g, mul(exp(neg(mul(x, x))), 2 / math.sqrt(math.pi))),
    f32_fast("math.erf({0})", "erf_f32({0})"),
    saves=(0,),
)

# relu: the gradient at exactly 0 is 0, as in PyTorch (and every framework): relu is not
# differentiable there, and 0 keeps dead units dead instead of half-alive.
relu = unary(
    "relu",
    lambda x: np.maximum(x, 0).astype(x.dtype, copy=False),
    lambda g, out, x: where(gt(out, 0), g, 0.0),
    "max({0}, 0)",
    dtype=_same,
    saves_out=True,
)

abs = unary(  # noqa: A001 - the op's name
    "abs",
    np.abs,
    lambda g, out, x: mul(g, sign(x)),
    "abs({0})",
    dtype=_same,
    saves=(0,),
    cheap=True,
)
sign = unary(
    "sign",
    np.sign,
    lambda g, out, x: zeros_like(g),
    # numpy's sign: 0 at 0 (so abs's gradient there is 0, as eager), NaN stays NaN
    "((0.0 if {0} == 0 else math.copysign(1.0, {0})) if {0} == {0} else {0})",
    dtype=_same,
)


def _silu_vjp(g: Any, out: Any, x: Any) -> Any:
    # silu = x * s, s = sigmoid(x);  silu' = s * (1 + x * (1 - s))
    s = sigmoid(x)
    return mul(g, mul(s, add(mul(x, sub(1, s)), 1)))


silu = unary(
    "silu",
    lambda x: x * _sigmoid_forward(x),
    _silu_vjp,
    f32_fast("({0} / (1.0 + math.exp(-{0})))", "({0} / (np.float32(1.0) + exp_f32(-{0})))"),
    saves=(0,),
)

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_forward(x: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype, copy=False)
    if type(x) is np.ndarray and x.dtype == np.float32:
        return gelu_array(x)  # float32 erf that vectorizes, as compiled loops use
    return (0.5 * x * (1 + _scipy_erf()(x / _SQRT_2))).astype(x.dtype, copy=False)


def _gelu_grad_parts(g: Any, x: Any, *, approximate: str = "none") -> Any:
    """GELU's input gradient written with ops: `gelu_grad`'s decomposition."""
    if approximate == "tanh":
        # d/dx 0.5 x (1 + t),  t = tanh(k (x + c x^3))
        t = tanh(mul(add(x, mul(pow(x, 3), 0.044715)), _SQRT_2_OVER_PI))
        dinner = mul(add(mul(mul(x, x), 3 * 0.044715), 1), _SQRT_2_OVER_PI)
        d = add(mul(add(t, 1), 0.5), mul(mul(mul(x, 0.5), sub(1, mul(t, t))), dinner))
        return mul(g, d)
    # exact: Phi(x) + x * phi(x)
    cdf = mul(add(erf(div(x, _SQRT_2)), 1), 0.5)
    pdf = mul(exp(mul(mul(x, x), -0.5)), _INV_SQRT_2PI)
    return mul(g, add(cdf, mul(x, pdf)))


def _gelu_grad_forward(g: Any, x: Any, *, approximate: str = "none") -> np.ndarray:
    dtype = result_type(g, x)
    g = np.broadcast_to(np.asarray(g, dtype=dtype), np.shape(x))
    if approximate == "none" and dtype == np.float32:
        return gelu_grad_array(g, np.asarray(x, dtype=dtype))  # as the compiled loops' erf/exp
    x = np.asarray(x, dtype=dtype)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        t = np.tanh(inner)
        dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner
    else:
        d = 0.5 * (1 + _scipy_erf()(x / _SQRT_2)) + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return np.asarray(g * d, dtype=dtype)


# GELU's input gradient: one pass eagerly; traced, and differentiated (create_graph=True),
# through its decomposition
gelu_grad = defop(
    "gelu_grad",
    forward=quiet(_gelu_grad_forward),
    abstract=lambda g, x, *, approximate="none": Aval(shape_of(x), result_type(g, x)),
    out_dtype=lambda g, x, *, approximate="none": result_type(g, x),
    kind="nn",
    decompose=_gelu_grad_parts,
)

gelu = unary(
    "gelu",
    _gelu_forward,
    lambda g, out, x, *, approximate="none": gelu_grad(g, x, approximate=approximate),
    _lower_gelu,
    saves=(0,),
)


# --------------------------------------------------------------------------------------------
# astype: change dtype. The cotangent goes back to the input's dtype.

astype = defop(
    "astype",
    forward=lambda x, *, dtype: np.asarray(x).astype(dtype),
    abstract=lambda x, *, dtype: Aval(x.shape, dtype),
    out_dtype=lambda x, *, dtype: np.dtype(dtype),
    vjp=(lambda g, out, x, *, dtype: astype(g, dtype=x.dtype),),
    lower="{0}",
    grad_name="ToCopyBackward0",
    cheap=True,
)
