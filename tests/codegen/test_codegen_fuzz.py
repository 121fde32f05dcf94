"""Code generation over many random programs, without compiling them with Numba: every program's
value-and-gradient tape is partitioned, written as segments and a driver, and each module is
compiled by Python (a generated module that is not valid Python -- a duplicated parameter, a
name used before it is assigned -- fails here). A few hundred programs take seconds; the long
run is `TRACEGRAD_FUZZ_EXAMPLES=20000 pytest tests/codegen/test_codegen_fuzz.py`.

The programs mix what fusion treats differently: elementwise chains and broadcasts (loops),
reductions with and without keepdim (accumulators, epilogues), reshapes, transposes, slices,
cat and row lookups (library calls), matmul (numpy steps between segments), values used by
several later kernels (materialized or recomputed: rule 8)."""

from __future__ import annotations

import os
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from random_programs import broadcasts

import tracegrad as tg
from tracegrad.codegen.program import write_cpu_program
from tracegrad.tape.passes import optimize

EXAMPLES = int(os.environ.get("TRACEGRAD_FUZZ_EXAMPLES", "150"))
INDEX = np.array([[2, 0], [1, 1], [-1, 0]])


@st.composite
def programs(draw: Any) -> tuple:
    shapes = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=1, max_dims=3, min_side=1, max_side=4
        )
    )
    values = list(shapes.input_shapes)
    steps = []
    for _ in range(draw(st.integers(1, 9))):
        i = draw(st.integers(0, len(values) - 1))
        shape = values[i]
        kind = draw(
            st.sampled_from(
                [
                    "unary",
                    "binary",
                    "reduce",
                    "flatten",
                    "transpose",
                    "slice",
                    "cat",
                    "rows",
                    "matmul",
                    "scalar",
                ]
            )
        )
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(["tanh", "exp", "relu", "square"])), i))
        elif kind == "scalar":
            steps.append(("scalar", i, draw(st.floats(-2, 2, width=32))))
        elif kind == "binary":
            partners = [j for j, s in enumerate(values) if broadcasts(s, shape)]
            j = draw(st.sampled_from(partners))
            steps.append(("binary", draw(st.sampled_from(["add", "mul", "max"])), i, j))
            shape = np.broadcast_shapes(shape, values[j])
        elif kind == "reduce":
            dim = draw(st.integers(0, len(shape) - 1))
            keep = draw(st.booleans())
            steps.append(("reduce", draw(st.sampled_from(["sum", "mean", "amax"])), i, dim, keep))
            shape = (
                tuple(1 if d == dim else s for d, s in enumerate(shape))
                if keep
                else tuple(s for d, s in enumerate(shape) if d != dim)
            )
            if not shape:
                steps[-1] = ("reduce", steps[-1][1], i, dim, True)
                shape = (1,)
        elif kind == "flatten":
            steps.append(("flatten", i))
            shape = (int(np.prod(shape)),)
        elif kind == "transpose":
            if len(shape) < 2:
                continue
            steps.append(("transpose", i))
            shape = shape[:-2] + (shape[-1], shape[-2])
        elif kind == "slice":
            dim = draw(st.integers(0, len(shape) - 1))
            size = shape[dim]
            start = draw(st.integers(0, size - 1))
            stop = draw(st.integers(start + 1, size))
            steps.append(("slice", i, dim, start, stop))
            shape = tuple(stop - start if d == dim else s for d, s in enumerate(shape))
        elif kind == "cat":
            dim = draw(st.integers(0, len(shape) - 1))
            steps.append(("cat", i, dim))
            shape = tuple(2 * s if d == dim else s for d, s in enumerate(shape))
        elif kind == "rows":
            if shape[0] < 3:
                continue
            steps.append(("rows", i))
            shape = INDEX.shape + shape[1:]
        else:  # matmul by a fixed (k, 3) weight
            steps.append(("matmul", i))
            shape = shape[:-1] + (3,)
        values.append(tuple(shape))
    return tuple(shapes.input_shapes), steps


def run(steps: list, x: Any, y: Any) -> Any:
    values = [x, y]
    for step in steps:
        kind, a = step[0], values[step[2] if kind_has_name(step) else step[1]]
        if kind == "unary":
            f = {
                "tanh": tg.tanh,
                "exp": lambda t: (t * 0.3).exp(),
                "relu": tg.relu,
                "square": lambda t: t * t,
            }[step[1]]
            values.append(f(a))
        elif kind == "scalar":
            values.append(a * step[2] + 1)
        elif kind == "binary":
            b = values[step[3]]
            values.append({"add": a + b, "mul": a * b, "max": tg.maximum(a, b)}[step[1]])
        elif kind == "reduce":
            values.append(getattr(a, step[1])(step[3], keepdim=step[4]))
        elif kind == "flatten":
            values.append(a.reshape(-1))
        elif kind == "transpose":
            values.append(a.transpose(-1, -2))
        elif kind == "slice":
            dim, start, stop = step[2:]
            values.append(a.narrow(dim, start, stop - start))
        elif kind == "cat":
            values.append(tg.cat((a, a * 2), dim=step[2]))
        elif kind == "rows":
            values.append(a[tg.tensor(INDEX)])
        else:
            w = tg.tensor(np.linspace(-1, 1, a.shape[-1] * 3).reshape(-1, 3), dtype=a.dtype)
            values.append(a @ w)
    total = values[0].sum() * 0
    for v in values:
        total = total + (v * v).sum()
    return total


def kind_has_name(step: tuple) -> bool:
    return step[0] in ("unary", "binary", "reduce")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs(), parallel=st.booleans())
def test_generated_modules_are_valid_python(program: tuple, parallel: bool) -> None:
    (sx, sy), steps = program
    x = tg.tensor(np.linspace(-1, 1, int(np.prod(sx))).reshape(sx).astype(np.float32))
    y = tg.tensor(np.linspace(1, -1, int(np.prod(sy))).reshape(sy).astype(np.float32))
    f = tg.value_and_grad(lambda a, b: run(steps, a, b), argnums=(0, 1))
    tape = optimize(tg.make_tape(f)(x, y))
    # the program only (written, not compiled): every segment's module, and the driver
    code = write_cpu_program(tape, parallel, cache=False)
    compile(code.driver_source, "<driver>", "exec")
    assert all(k.eqns for k in code.kernels)  # no kernel left empty (an empty header)
    for _, segment in code.segments():
        source = segment.source
        compile(source, "<segment>", "exec")  # SyntaxError: the generated code is invalid
        header = next(line for line in source.splitlines() if line.startswith("def "))
        params = header[header.index("(") + 1 : header.rindex(")")].split(", ")
        assert len(params) == len(set(params)), header


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs(), parallel=st.booleans(), momentum=st.booleans())
def test_generated_training_steps_are_valid_python(
    program: tuple, parallel: bool, momentum: bool
) -> None:
    # captured parameters updated in place after backward (state writes, buffer donation)
    (sx, sy), steps = program
    x = tg.tensor(np.linspace(-1, 1, int(np.prod(sx))).reshape(sx).astype(np.float32))
    p = tg.tensor(np.linspace(1, -1, int(np.prod(sy))).reshape(sy).astype(np.float32))
    p.requires_grad_()
    buf = tg.zeros(sy)

    def step(x: Any) -> Any:
        p.grad = None
        loss = run(steps, x, p)
        loss.backward()
        with tg.no_grad():
            if momentum:
                buf.mul_(0.9).add_(p.grad)
                p.sub_(buf * 0.1)
            else:
                p.sub_(p.grad * 0.1)
        return loss

    old = os.environ.get("TRACEGRAD_DISABLE_DISK_CACHE")
    os.environ["TRACEGRAD_DISABLE_DISK_CACHE"] = "1"
    try:
        source = tg.jit(step, parallel=parallel).source(x)  # traced and written, not compiled
    finally:
        if old is None:
            del os.environ["TRACEGRAD_DISABLE_DISK_CACHE"]
        else:
            os.environ["TRACEGRAD_DISABLE_DISK_CACHE"] = old
    compile(source, "<step>", "exec")
    for line in source.splitlines():
        if line.startswith("def segment("):
            params = line[len("def segment(") : line.rindex(")")].split(", ")
            assert len(params) == len(set(params)), line
