"""Compiled loops run serially for a moment after a BLAS call (ops/core.py, `blas_recent`):
the driver passes each segment the literal table whose parallel grain is out of reach. The
results are the same either way; what is checked is the switch itself."""

import numpy as np

import tracegrad as tg
from tracegrad.ops import core


def test_blas_marks_the_clock_and_the_driver_switches_tables(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_PARALLEL_GRAIN", "0")  # parallel loops at any size
    f = tg.jit(lambda x: (x * 2 + 1).exp())
    x = tg.tensor(np.linspace(-1, 1, 64, dtype=np.float32))
    expected = np.exp(x.numpy() * 2 + 1)
    monkeypatch.setattr(core, "_blas_clock", [0.0])
    assert not core.blas_recent()
    np.testing.assert_allclose(f(x).numpy(), expected, rtol=1e-6)
    entry = f._cache[next(iter(f._cache))][0]
    driver = entry.executable.program.driver_source
    assert "_serial = _blas_recent()" in driver and "_serial else" in driver
    (seg,) = [s for _, s in entry.executable.program.segments()]
    assert seg.LI_serial is not None and seg.LI_serial.max() == np.iinfo(np.int64).max
    tg.ones(3, 3) @ tg.ones(3, 3)  # an eager matmul: BLAS ran just now
    assert core.blas_recent()
    np.testing.assert_allclose(f(x).numpy(), expected, rtol=1e-6)  # the serial table
