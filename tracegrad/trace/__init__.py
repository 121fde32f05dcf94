"""Stage 1: tracing a Python function into a Tape (see `tracer.py`)."""

from .tracer import NeedsEagerCall, Tracer, make_tape, require_concrete_state, trace

__all__ = ["NeedsEagerCall", "Tracer", "make_tape", "require_concrete_state", "trace"]
