"""`tg.optim.lr_scheduler` against closed forms over long schedules (PyTorch's recursive forms
must stay on them), PyTorch's documented values, its warnings and its state dicts."""

from __future__ import annotations

import math
import warnings
from bisect import bisect_right

import pytest

import tracegrad as tg
from tracegrad.optim import lr_scheduler as S

STEPS = 150


def _opt(lr=0.5, kind="sgd", groups=1):
    params = [[tg.nn.Parameter(tg.zeros(2))] for _ in range(groups)]
    pg = [{"params": p, "lr": lr * (i + 1)} for i, p in enumerate(params)]
    if kind == "adam":
        return tg.optim.Adam(pg, lr=lr)
    return tg.optim.SGD(pg, lr=lr, momentum=0.9)


def _run(opt, sched, steps=STEPS):
    """The lr of every group at epochs 0..steps-1, stepping as PyTorch's docs do."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        assert sched.get_last_lr() == out[-1]
        opt.step()
        sched.step()
    return out


CLOSED = {
    "StepLR": (lambda o: S.StepLR(o, step_size=7, gamma=0.5), lambda b, e: b * 0.5 ** (e // 7)),
    "MultiStepLR": (
        lambda o: S.MultiStepLR(o, milestones=[10, 30, 30, 90], gamma=0.3),
        lambda b, e: b * 0.3 ** bisect_right([10, 30, 30, 90], e),
    ),
    "ExponentialLR": (lambda o: S.ExponentialLR(o, gamma=0.97), lambda b, e: b * 0.97**e),
    "CosineAnnealingLR": (
        lambda o: S.CosineAnnealingLR(o, T_max=40, eta_min=0.01),
        lambda b, e: 0.01 + (b - 0.01) * (1 + math.cos(math.pi * e / 40)) / 2,
    ),
    "CosineAnnealingWarmRestarts": (
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10, eta_min=0.001),
        lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * (e % 10) / 10)) / 2,
    ),
    "CosineAnnealingWarmRestarts-Tmult2": (
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2),
        lambda b, e: b * (1 + math.cos(math.pi * _t_cur(e, 5) / _t_i(e, 5))) / 2,
    ),
    "LambdaLR": (
        lambda o: S.LambdaLR(o, lambda e: 0.95**e + 0.1),
        lambda b, e: b * (0.95**e + 0.1),
    ),
    "MultiplicativeLR": (
        lambda o: S.MultiplicativeLR(o, lambda e: 0.99),
        lambda b, e: b * 0.99**e,
    ),
    "LinearLR": (
        lambda o: S.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=25),
        lambda b, e: b * (0.1 + 0.8 * min(25, e) / 25),
    ),
    "ConstantLR": (
        lambda o: S.ConstantLR(o, factor=0.25, total_iters=12),
        lambda b, e: b * (0.25 if e < 12 else 1.0),
    ),
    "PolynomialLR": (
        lambda o: S.PolynomialLR(o, total_iters=60, power=2.0),
        lambda b, e: b * (1 - min(60, e) / 60) ** 2,
    ),
}


def _t_i(e, t0):
    t = t0
    while e >= t:
        e -= t
        t *= 2
    return t


def _t_cur(e, t0):
    t = t0
    while e >= t:
        e -= t
        t *= 2
    return e


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_schedule_equals_its_closed_form(name):
    make, closed = CLOSED[name]
    opt = _opt(groups=2)
    lrs = _run(opt, make(opt))
    for e, row in enumerate(lrs):
        for g, lr in enumerate(row):
            base = 0.5 * (g + 1)
            assert lr == pytest.approx(closed(base, e), rel=1e-9, abs=1e-12), (e, g)


def test_closed_form_when_an_epoch_is_given():
    opt = _opt()
    sched = S.StepLR(opt, step_size=3, gamma=0.1)
    opt.step()
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(7)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * 0.1**2)


def test_one_cycle_lr_and_momentum():
    opt = _opt(lr=0.1)
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=100, pct_start=0.25)
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        if len(lrs) < 100:
            sched.step()
    assert lrs[0] == pytest.approx(1.0 / 25)
    assert moms[0] == pytest.approx(0.95)
    peak = int(0.25 * 100) - 1
    assert lrs[peak] == pytest.approx(1.0) and max(lrs) == pytest.approx(1.0)
    assert moms[peak] == pytest.approx(0.85) and min(moms) == pytest.approx(0.85)
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4)
    # cosine annealing between the phase ends
    e = 60
    pct = (e - peak) / (99 - peak)
    want = 1.0 / 25 / 1e4 + (1.0 - 1.0 / 25 / 1e4) / 2 * (math.cos(math.pi * pct) + 1)
    assert lrs[e] == pytest.approx(want)
    sched.step()  # epoch 100 = total_steps is still allowed, as in PyTorch
    with pytest.raises(ValueError, match="Tried to step 101 times"):
        sched.step()


def test_one_cycle_cycles_adams_beta1_and_three_phases():
    opt = _opt(kind="adam")
    sched = S.OneCycleLR(
        opt, max_lr=0.01, epochs=4, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"
    )
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    seen = []
    for _ in range(39):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert max(seen) == pytest.approx(0.01)
    assert seen[-1] == pytest.approx(0.01 / 25 / 1e4)


def test_sequential_lr_warmup_then_decay():
    opt = _opt(lr=1.0)
    warm = S.LinearLR(opt, start_factor=0.25, total_iters=4)
    decay = S.ExponentialLR(opt, gamma=0.9)
    sched = S.SequentialLR(opt, [warm, decay], milestones=[4])
    lrs = [row[0] for row in _run(opt, sched, 10)]
    want = [0.25, 0.4375, 0.625, 0.8125, 1.0, 0.9, 0.81, 0.729, 0.6561, 0.59049]
    assert lrs == pytest.approx(want)


def test_sequential_lr_checks_its_arguments():
    opt = _opt()
    a, b = S.ConstantLR(opt), S.ExponentialLR(opt, 0.9)
    with pytest.raises(ValueError, match="one more than the number of milestone"):
        S.SequentialLR(opt, [a, b], milestones=[1, 2])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        S.SequentialLR(opt, [a, S.ReduceLROnPlateau(opt)], milestones=[1])


def test_chained_scheduler_multiplies():
    opt = _opt(lr=1.0)
    sched = S.ChainedScheduler(
        [S.ConstantLR(opt, factor=0.5, total_iters=3), S.ExponentialLR(opt, gamma=0.9)]
    )
    lrs = [row[0] for row in _run(opt, sched, 6)]
    want = [0.5 * 0.9**e if e < 3 else 0.9**e for e in range(6)]
    assert lrs == pytest.approx(want)


def test_reduce_lr_on_plateau():
    opt = _opt(lr=1.0)
    sched = S.ReduceLROnPlateau(opt, patience=2, factor=0.5, cooldown=1, min_lr=0.2)
    losses = [5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]
    lrs = []
    for loss in losses:
        opt.step()
        sched.step(tg.tensor(float(loss)))
        lrs.append(opt.param_groups[0]["lr"])
    # the best is 4 (epoch 2); three bad epochs reduce, a cooldown epoch does not count
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2]
    assert sched.get_last_lr() == [0.2]
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        S.ReduceLROnPlateau(opt, factor=1.0)


def test_step_order_warning():
    opt = _opt()
    sched = S.StepLR(opt, 2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt = _opt()
    sched = S.StepLR(opt, 2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


def test_get_lr_outside_step_warns():
    opt = _opt()
    sched = S.ExponentialLR(opt, 0.5)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()


def test_state_dict_round_trip_continues_the_schedule():
    opt = _opt()
    sched = S.CosineAnnealingLR(opt, T_max=20)
    _run(opt, sched, 7)
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 7
    rest = _run(opt, sched, 10)

    opt2 = _opt()
    opt2.param_groups[0]["lr"] = rest[0][0]
    opt2.param_groups[0]["initial_lr"] = 0.5
    sched2 = S.CosineAnnealingLR(opt2, T_max=20, last_epoch=6)
    sched2.load_state_dict(saved)
    assert [r[0] for r in _run(opt2, sched2, 10)] == pytest.approx([r[0] for r in rest])


def test_resuming_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(_opt(), 3, last_epoch=5)


def test_lambda_lr_state_dict_skips_functions():
    opt = _opt(groups=2)
    sched = S.LambdaLR(opt, [lambda e: 1.0, lambda e: 0.5])
    assert sched.state_dict()["lr_lambdas"] == [None, None]
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        S.LambdaLR(opt, [lambda e: 1.0])
