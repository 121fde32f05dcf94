"""Stage 1: tracing a Python function into a Tape (see `tracer.py`)."""

from .tracer import Tracer, make_tape, trace

__all__ = ["Tracer", "make_tape", "trace"]
