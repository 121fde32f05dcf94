"""The counter-based generator (ops/random.py): statistics of its numbers, reproducibility by
seed, and independence of successive draws."""

from __future__ import annotations

import numpy as np

import tracegrad as tg


def test_uniform_statistics():
    tg.manual_seed(0)
    for dtype in (tg.float32, tg.float64):
        u = tg.rand(200_000, dtype=dtype).numpy()
        assert u.dtype == dtype and u.min() >= 0.0 and u.max() < 1.0
        assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
        counts = np.bincount((u * 20).astype(int), minlength=20)
        chi2 = ((counts - u.size / 20) ** 2 / (u.size / 20)).sum()
        assert chi2 < 60  # 19 degrees of freedom: p < 1e-5 above 50
        assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # successive numbers independent


def test_normal_and_integer_statistics():
    tg.manual_seed(1)
    z = tg.randn(200_000, dtype=tg.float64).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z**3).mean()) < 0.03 and abs((z**4).mean() - 3) < 0.1  # symmetric, normal tails
    k = tg.randint(-3, 4, (70_000,)).numpy()
    assert k.dtype == np.int64 and k.min() == -3 and k.max() == 3
    assert np.all(np.abs(np.bincount(k + 3) / 10_000 - 1) < 0.08)


def test_seeds_reproduce_and_draws_do_not_repeat():
    tg.manual_seed(7)
    a, b = tg.rand(5), tg.rand(5)
    tg.manual_seed(7)
    assert tg.rand(5).tolist() == a.tolist() and tg.rand(5).tolist() == b.tolist()
    assert a.tolist() != b.tolist()
    tg.manual_seed(8)
    assert tg.rand(5).tolist() != a.tolist()
    tg.manual_seed(7)
    assert tg.rand(10).tolist()[5:] == b.tolist()  # a draw is a window of one stream
