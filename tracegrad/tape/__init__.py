"""The IR: `Var`, `Eqn`, `Tape`; a printer, a type checker, a reference interpreter, and the
tape-to-tape passes (dead code, common subexpressions, trivial adjoint equations)."""

from .check import TapeTypeError, check
from .errors import TracerError
from .interpret import interpret
from .ir import Eqn, StateWrite, Tape, Var, WriteKind
from .printer import pprint

__all__ = [
    "WriteKind",
    "Var",
    "Eqn",
    "Tape",
    "StateWrite",
    "TracerError",
    "TapeTypeError",
    "check",
    "interpret",
    "pprint",
]
