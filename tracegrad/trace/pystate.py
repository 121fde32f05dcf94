"""Python state a trace reads: runtime scalars and guards.

A training step reads more than tensors. `opt.step()` reads `group["lr"]`, `group["momentum"]`,
`group["nesterov"]`; a BatchNorm reads `self.training`, `self.momentum`, `self.eps`. Tracing
runs the Python code once, so every such read would be frozen into the compiled program. This
module makes each one either

* a **runtime scalar** -- a `Sym`: a number that remembers where it was read (`Source`) and
  the arithmetic done on it (`1 - lr * wd` is a `Sym` with the code `(1 - (s[0] * s[1]))`).
  When it reaches a tensor op it becomes a 0-d input of the tape (`Tracer.scalar_input`), whose
  value the runtime computes from the live object on every call. Changing the number retraces
  nothing and recompiles nothing. Floats and ints of optimizer param groups and float
  attributes of modules are runtime scalars; or

* a **guard** -- checked before every call; a change retraces. Flags, modes, `None`, ints of
  modules, the identity of parameters, buffers and submodules (`ModuleGuard`) and of the
  optimizer's param groups and their parameter lists (`OptimizerGuard`) are guards. A `Sym`
  used for control flow or converted to a plain number (`if momentum:`, `lr > 0`,
  `float(eps)`, `range(n)`) becomes a guard on exactly that fact (`Predicate`).

So nothing a user changes between calls is silently ignored: it takes effect (runtime scalar)
or the call retraces (guard), and `TRACEGRAD_EXPLAIN_CACHE_MISSES=1` names the guard.

    >>> import tracegrad as tg
    >>> w = tg.nn.Parameter(tg.ones(2))
    >>> opt = tg.optim.SGD([w], lr=0.5)
    >>> @tg.jit
    ... def step():
    ...     opt.zero_grad()
    ...     (w * w).sum().backward()
    ...     opt.step()
    >>> step(); step(); w  # (the second call compiles: the first made w.grad)
    Parameter containing:
    tensor([0., 0.], requires_grad=True)
    >>> traces = step.stats["traces"]
    >>> w.data.fill_(1.0); opt.param_groups[0]["lr"] = 0.25; step(); w
    tensor([1., 1.])
    Parameter containing:
    tensor([0.5000, 0.5000], requires_grad=True)
    >>> step.stats["traces"] == traces  # the new lr took effect without a new trace
    True
"""

from __future__ import annotations

import math
import operator
import re
import weakref
from typing import Any

import numpy as np

from ..ops.core import SymbolicNumber
from ..tape.errors import TracerError, user_location
from ..tensor import tracing

_MISSING = object()
_NUMBER = (int, float)


# --------------------------------------------------------------------------------------------
# sources: where a runtime number is read from, at trace time and at every call


class Source:
    """`obj[key]` (a param group's entry; `index` picks an element of a tuple such as betas)
    or `obj.__dict__[key]` (a module's attribute), read through a weak reference: a source
    whose object is gone fails its guard, it does not keep the object alive."""

    __slots__ = ("ref", "key", "index", "attr", "label", "type")

    def __init__(self, obj: Any, key: str, index: int | None, attr: bool, label: str) -> None:
        self.ref = weakref.ref(obj)
        self.key = key
        self.index = index
        self.attr = attr
        self.label = label
        self.type = None

    def get(self) -> Any:
        obj = self.ref()
        if obj is None:
            return _MISSING
        value = obj.__dict__.get(self.key, _MISSING) if self.attr else dict.get(obj, self.key)
        if self.index is not None:
            if type(value) not in (tuple, list) or len(value) <= self.index:
                return _MISSING
            value = value[self.index]
        return value

    def check(self, value: Any) -> str | None:
        """Why `value` (read now) cannot stand in for the traced one, or None."""
        if value is _MISSING:
            return f"{self.label} no longer exists"
        if type(value) is not self.type:
            return f"{self.label} changed type from {self.type.__name__} to {type(value).__name__}"
        return None


# --------------------------------------------------------------------------------------------
# Sym: a number that remembers where it came from


def _code_of(x: Any) -> str | None:
    """The code of an operand of a Sym operation: a Sym's own, a plain number's repr."""
    if isinstance(x, Sym):
        return x.code
    if type(x) in (int, float, bool):
        return repr(x) if math.isfinite(x) else f"float({str(x)!r})"
    return None


class Sym(SymbolicNumber):
    """A Python number read from user state while tracing (see the module docstring).

    Arithmetic with numbers and other Syms gives Syms; comparisons, `bool()`, `float()`,
    `int()`, indexing and hashing give plain Python values and record a guard on the fact they
    used. Used after its trace ended, it raises (it would be a stale value)."""

    __slots__ = ("value", "code", "tracer")

    def __init__(self, value: Any, code: str, tracer: Any) -> None:
        self.value = value
        self.code = code
        self.tracer = tracer

    def _live(self) -> Any:
        if tracing.tracer is not self.tracer or self.tracer.tape.done:
            raise TracerError(
                f"{user_location()}: a number read from user state while tg.jit traced a "
                f"function ({self.tracer.describe(self.code)} = {self.value!r}) was used after "
                "that trace ended; it would be a stale value. Read the number again instead of "
                "keeping it."
            )
        return self.tracer

    # arithmetic: more Syms -------------------------------------------------------------------

    def _binary(self, other: Any, fn: Any, sign: str, reflected: bool) -> Any:
        code = _code_of(other)
        if code is None:
            return NotImplemented
        tracer = self._live()
        if isinstance(other, Sym) and other.tracer is not tracer:
            other._live()
        o = other.value if isinstance(other, Sym) else other
        if reflected:
            return Sym(fn(o, self.value), f"({code} {sign} {self.code})", tracer)
        return Sym(fn(self.value, o), f"({self.code} {sign} {code})", tracer)

    def __add__(self, o: Any) -> Any:
        return self._binary(o, operator.add, "+", False)

    def __radd__(self, o: Any) -> Any:
        return self._binary(o, operator.add, "+", True)

    def __sub__(self, o: Any) -> Any:
        return self._binary(o, operator.sub, "-", False)

    def __rsub__(self, o: Any) -> Any:
        return self._binary(o, operator.sub, "-", True)

    def __mul__(self, o: Any) -> Any:
        return self._binary(o, operator.mul, "*", False)

    def __rmul__(self, o: Any) -> Any:
        return self._binary(o, operator.mul, "*", True)

    def __truediv__(self, o: Any) -> Any:
        return self._binary(o, operator.truediv, "/", False)

    def __rtruediv__(self, o: Any) -> Any:
        return self._binary(o, operator.truediv, "/", True)

    def __floordiv__(self, o: Any) -> Any:
        return self._binary(o, operator.floordiv, "//", False)

    def __rfloordiv__(self, o: Any) -> Any:
        return self._binary(o, operator.floordiv, "//", True)

    def __mod__(self, o: Any) -> Any:
        return self._binary(o, operator.mod, "%", False)

    def __rmod__(self, o: Any) -> Any:
        return self._binary(o, operator.mod, "%", True)

    def __pow__(self, o: Any) -> Any:
        return self._binary(o, operator.pow, "**", False)

    def __rpow__(self, o: Any) -> Any:
        return self._binary(o, operator.pow, "**", True)

    def __neg__(self) -> Sym:
        return Sym(-self.value, f"(-{self.code})", self._live())

    def __pos__(self) -> Sym:
        return self

    def __abs__(self) -> Sym:
        return Sym(abs(self.value), f"abs({self.code})", self._live())

    # control flow and conversions: guards ----------------------------------------------------

    def _guard(self, code: str, result: Any, what: str) -> Any:
        self._live().add_predicate(code, result, what)
        return result

    def __bool__(self) -> bool:
        return self._guard(f"bool({self.code})", bool(self.value), "truth value")

    def _compare(self, other: Any, fn: Any, sign: str) -> Any:
        code = _code_of(other)
        if code is None:
            return NotImplemented
        o = other.value if isinstance(other, Sym) else other
        result = fn(self.value, o)
        return self._guard(f"({self.code} {sign} {code})", result, f"comparison with {code}")

    def __lt__(self, o: Any) -> Any:
        return self._compare(o, operator.lt, "<")

    def __le__(self, o: Any) -> Any:
        return self._compare(o, operator.le, "<=")

    def __gt__(self, o: Any) -> Any:
        return self._compare(o, operator.gt, ">")

    def __ge__(self, o: Any) -> Any:
        return self._compare(o, operator.ge, ">=")

    def __eq__(self, o: Any) -> Any:  # type: ignore[override]
        return self._compare(o, operator.eq, "==")

    def __ne__(self, o: Any) -> Any:  # type: ignore[override]
        return self._compare(o, operator.ne, "!=")

    def concrete(self) -> Any:
        """The value as a plain number, with a guard that it stays this value."""
        return self._guard(self.code, self.value, "value")

    def __float__(self) -> float:
        return float(self.concrete())

    def __int__(self) -> int:
        return int(self.concrete())

    def __index__(self) -> int:
        return operator.index(self.concrete())

    def __complex__(self) -> complex:
        return complex(self.concrete())

    def __round__(self, ndigits: Any = None) -> Any:
        return round(self.concrete(), ndigits)

    def __trunc__(self) -> int:
        return math.trunc(self.concrete())

    def __floor__(self) -> int:
        return math.floor(self.concrete())

    def __ceil__(self) -> int:
        return math.ceil(self.concrete())

    def __hash__(self) -> int:
        return hash(self.concrete())

    def __format__(self, spec: str) -> str:
        return format(self.concrete(), spec)

    def __str__(self) -> str:
        return str(self.concrete())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.concrete(), dtype=dtype)

    def item(self) -> Any:
        return self.concrete()

    def __repr__(self) -> str:
        # no guard: printing while tracing is for debugging
        return f"Sym({self.value!r}: {self.tracer.describe(self.code)})"


def concrete(x: Any) -> Any:
    """`x` with every Sym inside it (tuples, lists) replaced by its value, guarded."""
    if isinstance(x, Sym):
        return x.concrete()
    if type(x) in (tuple, list) and any(isinstance(v, Sym) for v in x):
        return type(x)(concrete(v) for v in x)
    return x


def compile_code(code: str) -> Any:
    """`lambda s: <code>` over the list of source values, cached by its text."""
    fn = _COMPILED.get(code)
    if fn is None:
        fn = _COMPILED[code] = eval(f"lambda s: {code}", {"abs": abs, "bool": bool, "len": len})  # noqa: S307
    return fn


_COMPILED: dict[str, Any] = {}


def compile_scalars(items: list[tuple[str, np.dtype]]) -> Any:
    """`lambda s: (np.asarray(<code>, <dtype>), ...)`: the values of a tape's runtime scalar
    inputs from the list of source values, in one call."""
    ns: dict[str, Any] = {"_a": np.asarray, "abs": abs, "bool": bool, "len": len}
    parts = []
    for i, (code, dtype) in enumerate(items):
        ns[f"_d{i}"] = np.dtype(dtype)
        parts.append(f"_a({code}, _d{i})")
    return eval(f"lambda s: ({', '.join(parts)},)", ns)  # noqa: S307


_SOURCE_REF = re.compile(r"s\[(\d+)\]")


def describe(code: str, sources: list[Source]) -> str:
    """`(1 - (s[0] * s[1]))` -> `(1 - (param_groups[0]['lr'] * param_groups[0]['eps']))`."""
    return _SOURCE_REF.sub(lambda m: sources[int(m.group(1))].label, code)


def same(a: Any, b: Any) -> bool:
    """Equal, counting NaN equal to NaN (a guard on a NaN value must not fail forever)."""
    return a == b or (a != a and b != b)


# --------------------------------------------------------------------------------------------
# param groups: the dict an optimizer keeps its hyperparameters in


class ParamGroup(dict):
    """An optimizer's param group: a dict that, while a trace runs, hands out its numbers as
    runtime scalars and records a guard for every other value read (flags, `None`, the
    parameter list). Outside a trace it is a plain dict."""

    __slots__ = ("__weakref__", "index", "owner")

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        tracer = tracing.tracer
        if tracer is None:
            return value
        owner = self.owner() if getattr(self, "owner", None) is not None else None
        if owner is not None:  # its param groups and their params are guarded, whoever reads
            tracer.note_optimizer(owner)
        return tracer.read_item(self, key, value)

    def __setitem__(self, key: Any, value: Any) -> None:
        if tracing.tracer is not None:
            raise TracerError(
                f"{user_location()}: param_groups[...][{key!r}] was assigned while tg.jit traced "
                "the function; the assignment would happen once, while tracing, not at every "
                "call. Change hyperparameters outside the jitted function (call "
                "scheduler.step() after the compiled step, not inside it)."
            )
        dict.__setitem__(self, key, value)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default


# --------------------------------------------------------------------------------------------
# guards on whole objects


_PLAIN = (bool, int, str, bytes, type(None))


def _is_plain(v: Any) -> bool:
    """A value compared by equality: numbers, strings, None, and tuples, lists and dicts of
    them (`self.sizes = [3, 4]` changed in place is a change)."""
    if type(v) in _PLAIN or type(v) is float or isinstance(v, (np.generic, np.dtype)):
        return True
    if type(v) in (tuple, list):
        return all(_is_plain(x) for x in v)
    if type(v) is dict:
        return all(_is_plain(k) and _is_plain(x) for k, x in v.items())
    return False


def _snapshot(v: Any) -> Any:
    """A copy of a plain value that later changes of `v` in place do not reach."""
    if type(v) is list:
        return [_snapshot(x) for x in v]
    if type(v) is dict:
        return {k: _snapshot(x) for k, x in v.items()}
    return v


def _ident(v: Any) -> Any:
    """Something that tells whether `v` is still the same object, without keeping it alive
    where possible."""
    try:
        return weakref.ref(v)
    except TypeError:
        return lambda v=v: v


class _Edits:
    """A count of module edits (`nn.Module.__setattr__`, `__delattr__`, `register_*`,
    `add_module`, `train()`/`eval()` bump it). While it is unchanged since a trace's module
    guards last passed, no module can have changed through those: the check is skipped. Plain
    containers (a list attribute) can change in place, so their guards are always checked."""

    count = 0


module_edits = _Edits()


class ModuleGuard:
    """A module the trace called or read from: its parameters, buffers and submodules must be
    the same objects, its other attributes equal (flags such as `training`, ints, strings,
    `None`, lists of them) or the same objects (anything else). Float attributes are runtime
    scalars and not part of it. Checked before every call: a few C-level comparisons per
    module (about 1.5 us)."""

    __slots__ = (
        "ref",
        "name",
        "plain_keys",
        "plain_values",
        "stores",
        "object_keys",
        "objects",
        "volatile",
    )

    def __init__(self, module: Any, floats: set[str]) -> None:
        self.ref = weakref.ref(module)
        self.name = type(module).__name__
        d = module.__dict__
        plain = []
        objects = []
        stores = []
        for k, v in d.items():
            if k in ("_parameters", "_buffers", "_modules"):
                stores.append((k, tuple(v), tuple(_ident_or_none(x) for x in v.values())))
            elif k in floats or k == "_non_persistent_buffers":
                continue
            elif _is_plain(v):
                plain.append((k, _snapshot(v)))
            else:
                objects.append((k, _ident(v)))
        self.plain_keys = tuple(k for k, _ in plain)
        self.plain_values = tuple(v for _, v in plain)
        self.stores = tuple(stores)
        self.object_keys = tuple(k for k, _ in objects)
        self.objects = tuple(r for _, r in objects)
        # a list or dict attribute can change without a module edit (module_edits)
        self.volatile = any(type(v) in (list, dict) for v in self.plain_values)

    def assigned(self) -> list[str]:
        """The plain attributes whose values differ from the snapshot (used when the trace
        ends: such an assignment happened once, while tracing)."""
        m = self.ref()
        if m is None:
            return []
        d = m.__dict__
        return [
            f"{self.name}.{k}"
            for k, old in zip(self.plain_keys, self.plain_values)
            if not (same(old, d.get(k, _MISSING)) and type(old) is type(d.get(k, _MISSING)))
        ]

    def check(self) -> str | None:
        m = self.ref()
        if m is None:
            return f"a {self.name} module the function uses no longer exists"
        d = m.__dict__
        get = d.get
        if tuple(map(get, self.plain_keys)) != self.plain_values:
            for k, old in zip(self.plain_keys, self.plain_values):
                new = get(k, _MISSING)
                if not (same(old, new) and type(old) is type(new)):
                    return f"{self.name}.{k} changed from {old!r} to {new!r}"
        for store, names, refs in self.stores:
            now = d[store]
            if tuple(now) != names or any(
                map(operator.is_not, now.values(), [r and r() for r in refs])
            ):
                return f"{self.name}: a member of {store[1:]} was replaced, added or removed"
        if self.objects and any(
            map(operator.is_not, map(get, self.object_keys), [r() for r in self.objects])
        ):
            return f"{self.name}: an attribute was replaced by another object"
        return None


def _ident_or_none(x: Any) -> Any:
    return None if x is None else _ident(x)


class OptimizerGuard:
    """An optimizer the trace stepped: the same param group objects, each with the same
    parameter objects. A group that is a plain dict (appended by hand instead of through
    `add_param_group`) has all its values guarded, since its reads cannot be seen."""

    __slots__ = ("ref", "name", "groups", "params", "plain")

    def __init__(self, opt: Any) -> None:
        self.ref = weakref.ref(opt)
        self.name = type(opt).__name__
        self.groups = tuple(_ident(g) for g in opt.param_groups)
        self.params = tuple(
            tuple(weakref.ref(p) for p in dict.get(g, "params", ())) for g in opt.param_groups
        )
        self.plain = tuple(
            (i, {k: v for k, v in g.items() if k != "params"})
            for i, g in enumerate(opt.param_groups)
            if not isinstance(g, ParamGroup)
        )

    def check(self) -> str | None:
        opt = self.ref()
        if opt is None:
            return f"the {self.name} optimizer the function steps no longer exists"
        groups = opt.param_groups
        if len(groups) != len(self.groups):
            return f"{self.name}.param_groups changed length"
        for i, (g, ref) in enumerate(zip(groups, self.groups)):
            if g is not ref():
                return f"{self.name}.param_groups[{i}] was replaced by another dict"
            params = dict.get(g, "params", ())
            refs = self.params[i]
            if len(params) != len(refs) or any(p is not r() for p, r in zip(params, refs)):
                return f"{self.name}.param_groups[{i}]['params'] changed"
        for i, values in self.plain:
            for k, v in values.items():
                now = groups[i].get(k, _MISSING)
                if not same(now, v):
                    return f"{self.name}.param_groups[{i}][{k!r}] changed from {v!r} to {now!r}"
        return None


__all__ = [
    "Sym",
    "Source",
    "ParamGroup",
    "ModuleGuard",
    "module_edits",
    "OptimizerGuard",
    "concrete",
    "compile_code",
    "compile_scalars",
    "describe",
]
