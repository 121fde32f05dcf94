"""Loops below the grain size (TRACEGRAD_PARALLEL_GRAIN, default 32768 elements) run serially,
larger ones in parallel, in one compiled function; and the Python driver around the compiled
segments (codegen/driver.py)."""

from typing import Any

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad.codegen.cpu import GRAIN_SIZE, parallel_grain


def loss(x: Any, b: Any, y: Any) -> Any:
    # every kind of parallel loop: flat loops with a scalar reduction, broadcast nests, row
    # reductions, a row logsumexp, a partial reduction over an inner dim
    h = (x * b + 1).tanh()
    p = F.log_softmax(h, dim=1)
    centred = h - h.mean(1, keepdim=True)
    return -(p * y).sum() / x.shape[0] + (centred**2).mean() + h.amax(1).sum()


def _data(n: int, c: int) -> tuple:
    rng = np.random.default_rng(n)
    x = tg.tensor(rng.standard_normal((n, c)))
    b = tg.tensor(rng.standard_normal(c))
    y = tg.tensor(rng.random((n, c)))
    return x, b, y


def _expect_eager(f: Any, args: tuple) -> None:
    eager = tg.value_and_grad(loss, argnums=(0, 1))(*args)
    value, (gx, gb) = f(*args)
    np.testing.assert_allclose(value.numpy(), eager[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(gx.numpy(), eager[1][0].numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gb.numpy(), eager[1][1].numpy(), rtol=1e-10)


def test_sizes_on_both_sides_of_the_grain_share_the_compiled_code(monkeypatch: Any) -> None:
    monkeypatch.delenv("TRACEGRAD_PARALLEL_GRAIN", raising=False)
    f = tg.jit(tg.value_and_grad(loss, argnums=(0, 1)))
    _expect_eager(f, _data(4, 5))  # 20 elements: serial loops
    functions = f.stats["compiles"] + f.stats["disk_hits"]
    assert functions >= 1
    _expect_eager(f, _data(300, 130))  # 39000 > GRAIN_SIZE: parallel loops
    assert 300 * 130 > GRAIN_SIZE
    assert f.stats["traces"] == 2
    assert f.stats["compiles"] + f.stats["disk_hits"] == functions  # nothing new compiled
    # f.source() shows each loop once; the compiled text holds the serial copy and the branch
    source = f.source(*_data(4, 5))
    assert "where n0 * n1 < GRAIN" in source and "in prange(" in source
    assert "if n0 * n1 < GRAIN:" not in source
    program = f._entry_for(_data(4, 5), {}).executable.program
    compiled = "".join(segment.source for _, segment in program.segments())
    assert "if n0 * n1 < GRAIN:" in compiled and "in prange(" in compiled


def test_parallel_loops_at_small_sizes(monkeypatch: Any) -> None:
    # grain 0: the parallel branch of every loop runs at the sizes the other tests use
    monkeypatch.setenv("TRACEGRAD_PARALLEL_GRAIN", "0")
    assert parallel_grain() == 0
    f = tg.jit(tg.value_and_grad(loss, argnums=(0, 1)))
    for n, c in [(4, 5), (1, 7), (7, 1), (0, 3)]:
        args = _data(n, c)
        if n == 0:
            with np.errstate(all="ignore"):
                value, (gx, gb) = f(*args)
            assert gx.shape == (0, 3) and np.all(gb.numpy() == 0)
            continue
        _expect_eager(f, args)


def test_grain_must_be_a_number(monkeypatch: Any) -> None:
    monkeypatch.setenv("TRACEGRAD_PARALLEL_GRAIN", "many")
    with pytest.raises(ValueError, match="TRACEGRAD_PARALLEL_GRAIN"):
        parallel_grain()


def test_serial_graphs_have_no_branch() -> None:
    f = tg.jit(lambda x: (x * 2).sum(), parallel=False)
    source = f.source(tg.ones(3, 4))
    body = source.split("def segment(")[1]
    assert "GRAIN" not in body and "prange(" not in body


def test_driver_is_readable_and_results_own_their_memory() -> None:
    def f(x: Any, w: Any) -> Any:
        return x, (x @ w).relu().sum(), x.reshape(-1)

    jf = tg.jit(f)
    x, w = tg.ones(2, 3), tg.ones(3, 4)
    source = jf.source(x, w)
    driver = source.split("# ---- compiled segment")[0]
    assert "def call(args, captured):" in driver
    assert "matmul runs in numpy (BLAS)" in driver and "_segment" in driver
    same, total, flat = jf(x, w)
    assert total.item() == 24.0
    # an output that is an argument, or a view of one, is a copy (PyTorch's jit and JAX also
    # return new buffers): changing it leaves the argument alone
    same.numpy()[0, 0] = 5.0
    flat.numpy()[1] = 7.0
    assert x.numpy()[0, 0] == 1.0 and x.numpy()[0, 1] == 1.0


def test_constant_outputs_are_fresh_arrays() -> None:
    const = np.arange(3.0)
    f = tg.jit(lambda x: (x.sum(), tg.tensor(const)))
    _, c1 = f(tg.ones(2))
    c1.numpy()[0] = 100.0
    _, c2 = f(tg.ones(2))
    assert c2.numpy()[0] == 0.0 and const[0] == 0.0
