"""The IR: `Var`, `Eqn`, `Tape`.

A tape is a straight-line program over the op table::

    { lambda a:f32[2,3] ; let
        b:f32[2,3] = mul a 2
        c:f32[2,3] = add b 1
        d:f32[2,3] = pow c 2
        e:f32[] = mean[dims=(0, 1), keepdim=False] d
      in (e) }

* `args` are the explicit inputs (the flattened pytree leaves of the arguments);
* `captured` are implicit inputs: Tensors the traced function read without receiving them
  (parameters, optimizer buffers, `.grad`), read afresh at every call;
* `eqns` each apply one op to vars and Python-number literals and define one new var;
* `outputs` are the results; `writes` are the new values of captured state (`.data` of a
  captured tensor, or a `.grad`), which the runtime stores back after each call.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from ..ops.core import Aval, OpDef


class Var:
    """A value on a tape: an abstract array (shape and dtype) defined once."""

    __slots__ = ("aval", "tape", "__weakref__")

    def __init__(self, aval: Aval, tape: Tape | None = None) -> None:
        self.aval = aval
        self.tape = tape

    @property
    def shape(self) -> tuple[int, ...]:
        return self.aval.shape

    @property
    def dtype(self) -> np.dtype:
        return self.aval.dtype

    @property
    def ndim(self) -> int:
        return len(self.aval.shape)

    @property
    def size(self) -> int:
        return self.aval.size

    def __repr__(self) -> str:
        return f"Var({self.aval!r})"


class Eqn:
    """`out = op[params](*inputs)`; inputs are Vars or Python numbers (literals)."""

    __slots__ = ("op", "inputs", "out", "params")

    def __init__(self, op: OpDef, inputs: tuple, out: Var, params: dict) -> None:
        self.op = op
        self.inputs = tuple(inputs)
        self.out = out
        self.params = params

    def __repr__(self) -> str:
        return f"Eqn({self.op.name}, {len(self.inputs)} inputs)"


class WriteKind(enum.Enum):
    """What a state write replaces: a captured tensor's data, or its `.grad`."""

    DATA = "data"
    GRAD = "grad"


class StateWrite:
    """After a call, store `value` into captured state: the data of `tensor` (`WriteKind.DATA`)
    or its `.grad` (`WriteKind.GRAD`; `value` None means set `.grad = None`). `in_place` says
    whether the target tensor object exists and is overwritten, or a new `.grad` tensor is
    made. `target`: the tensor's captured var on the tape (its old value, which names it in the
    printed tape), or None when the tape does not read the tensor."""

    __slots__ = ("tensor_ref", "kind", "value", "in_place", "target")

    def __init__(
        self, tensor_ref: Any, kind: WriteKind, value: Any, in_place: bool, target: Var | None
    ) -> None:
        self.tensor_ref = tensor_ref
        self.kind = kind
        self.value = value
        self.in_place = in_place
        self.target = target


class Tape:
    """A traced program. See the module docstring."""

    def __init__(self) -> None:
        self.args: list[Var] = []
        self.captured: list[Var] = []
        self.captured_labels: list[str] = []
        self.eqns: list[Eqn] = []
        self.outputs: list[Any] = []
        self.writes: list[StateWrite] = []
        self.done = False

    def new_var(self, aval: Aval) -> Var:
        return Var(aval, self)

    def add_eqn(self, op: OpDef, inputs: tuple, aval: Aval, params: dict) -> Var:
        out = Var(aval, self)
        self.eqns.append(Eqn(op, inputs, out, params))
        return out

    @property
    def inputs(self) -> list[Var]:
        return self.args + self.captured

    def copy_with(self, eqns: list[Eqn], outputs: list, writes: list[StateWrite]) -> Tape:
        t = Tape()
        t.args = list(self.args)
        t.captured = list(self.captured)
        t.captured_labels = list(self.captured_labels)
        t.eqns = list(eqns)
        t.outputs = list(outputs)
        t.writes = list(writes)
        t.done = self.done
        return t

    def __str__(self) -> str:
        from .printer import pprint

        return pprint(self)

    __repr__ = __str__
