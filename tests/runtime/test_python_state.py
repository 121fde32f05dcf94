"""Python state a jitted function reads (trace/pystate.py): numbers are runtime scalars (a
change takes effect with no retrace and no recompile), flags and identities are guards (a
change retraces), and values tracing would freeze (random draws, the clock) raise."""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn


@pytest.fixture(autouse=True)
def interpreter(request, monkeypatch):
    """The guards and runtime scalars are the cache's and the tracer's: most tests here run
    the compiled programs on the reference interpreter (no Numba compile per graph); the tests
    marked `numba` check the same through compiled code."""
    if "numba" not in request.keywords:
        monkeypatch.setenv("TRACEGRAD_EXECUTOR", "interpreter")


def _mlp(seed: int = 0, dtype=np.float64) -> nn.Module:
    tg.manual_seed(seed)
    m = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Dropout(0.0), nn.Linear(8, 3)
    )
    return m.double() if dtype == np.float64 else m


def _data(n: int = 6, seed: int = 0):
    r = np.random.default_rng(seed)
    return tg.tensor(r.standard_normal((n, 4))), tg.tensor(r.integers(0, 3, n))


def _step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _pair(make_opt, seed=0):
    """An eager model and optimizer and a jitted twin, equal at the start."""
    a, b = _mlp(seed), _mlp(seed)
    oa, ob = make_opt(a.parameters()), make_opt(b.parameters())
    return (a, oa, _step(a, oa)), (b, ob, tg.jit(_step(b, ob)))


def _same(a, b, tol=1e-10):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=tol, atol=tol, err_msg=name)


OPTIMIZERS = {
    "sgd": lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: tg.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3),
    "adamw": lambda p: tg.optim.AdamW(p, lr=1e-2),
}

# (group key, new values): each a runtime scalar of the compiled step
CHANGES = {
    "sgd": [
        ("lr", [0.0, 0.05, 0.3]),
        ("momentum", [0.5, 0.99]),
        ("weight_decay", [0.0, 0.1]),
        ("dampening", [0.3]),
    ],
    "adam": [
        ("lr", [0.0, 3e-3]),
        ("betas", [(0.5, 0.9), (0.95, 0.999)]),
        ("eps", [1e-3]),
        ("weight_decay", [0.05]),
    ],
    "adamw": [("lr", [0.0, 0.02]), ("weight_decay", [0.3, 0.0])],
}


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_hyperparameter_changes_take_effect_without_retracing(kind):
    (a, oa, fa), (b, ob, fb) = _pair(OPTIMIZERS[kind])
    x, y = _data()
    for _ in range(3):  # eager first call (state), a trace, a compiled call
        fa(x, y), fb(x, y)
    _same(a, b)
    traces = fb.stats["traces"]
    for key, values in CHANGES[kind]:
        for v in values:
            for o in (oa, ob):
                o.param_groups[0][key] = v
            la, lb = fa(x, y), fb(x, y)
            assert abs(la.item() - lb.item()) < 1e-10, (key, v)
            _same(a, b)
    # a number that is zero or not takes another code path (`if weight_decay:`): at most one
    # new trace per such fact, never one per value
    assert fb.stats["traces"] - traces <= 3
    assert fb.stats["eager_calls"] == 1


@pytest.mark.numba
def test_learning_rate_schedule_costs_no_trace_and_no_compile():
    def make(seed=0):
        tg.manual_seed(seed)
        m = nn.Linear(4, 3).double()
        o = tg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
        return m, o, tg.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)

    (a, oa, sa), (b, ob, sb) = make(), make()
    fa, fb = _step(a, oa), tg.jit(_step(b, ob))
    x, y = _data()
    for i in range(12):
        la, lb = fa(x, y), fb(x, y)
        assert abs(la.item() - lb.item()) < 1e-12
        sa.step(), sb.step()
        if i == 2:
            stats = dict(fb.stats)
    _same(a, b, 1e-12)
    assert fb.stats["traces"] == stats["traces"]
    assert fb.stats["compiles"] == stats["compiles"]
    assert fb.stats["memory_hits"] == stats["memory_hits"] + 9


def test_flags_are_guards_nesterov_and_maximize():
    (a, oa, fa), (b, ob, fb) = _pair(lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9))
    x, y = _data()
    for _ in range(3):
        fa(x, y), fb(x, y)
    traces = fb.stats["traces"]
    for key, value in (("nesterov", True), ("maximize", True), ("nesterov", False)):
        for o in (oa, ob):
            o.param_groups[0][key] = value
        fa(x, y), fb(x, y)
        _same(a, b)
    assert fb.stats["traces"] == traces + 3


def test_train_eval_toggle_retraces_once_per_mode():
    (a, oa, fa), (b, ob, fb) = _pair(lambda p: tg.optim.SGD(p, lr=0.1))
    x, y = _data()
    for mode in ["train", "train", "eval", "eval", "train", "eval"]:
        for m in (a, b):
            getattr(m, mode)()
        la, lb = fa(x, y), fb(x, y)
        assert abs(la.item() - lb.item()) < 1e-10, mode
        _same(a, b)
    # traces: first call is eager (optimizer state), train, the .grad guard, eval
    assert fb.stats["traces"] <= 4


def test_module_float_attributes_are_runtime_scalars_ints_are_guards():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3).double()
            self.scale = 2.0
            self.repeat = 1

        def forward(self, x):
            for _ in range(self.repeat):
                x = self.lin(x) * self.scale
            return x

    m = Scaled()
    f = tg.jit(lambda x: m(x))
    x = tg.tensor(np.ones((2, 3)))
    with tg.no_grad():
        f(x)
        for scale in (0.5, -3.0):
            m.scale = scale
            np.testing.assert_allclose(f(x).numpy(), m(x).numpy(), rtol=1e-12)
        assert f.stats["traces"] == 1
        m.repeat = 2
        np.testing.assert_allclose(f(x).numpy(), m(x).numpy(), rtol=1e-12)
        assert f.stats["traces"] == 2
        m.scale = None  # a float that became something else: a new trace (and eager's error)
        with pytest.raises(TypeError):
            f(x)


def test_a_list_attribute_changed_in_place_retraces():
    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = [1.0, 2.0]

        def forward(self, x):
            return x * self.weights[0] + x * x * self.weights[1]

    m = Mix()
    f = tg.jit(lambda x: m(x))
    x = tg.tensor(np.arange(3.0))
    f(x)
    m.weights[1] = -1.0
    np.testing.assert_allclose(f(x).numpy(), m(x).numpy())
    assert f.stats["traces"] == 2


def test_batchnorm_momentum_and_eps_changes_take_effect():
    a, b = _mlp(), _mlp()
    fb = tg.jit(lambda x: b(x).sum())
    x, _ = _data()
    with tg.no_grad():
        for momentum, eps in [(0.1, 1e-5), (0.1, 1e-5), (0.5, 1e-5), (0.5, 0.1), (None, 0.1)]:
            for m in (a, b):
                m[1].momentum, m[1].eps = momentum, eps
            np.testing.assert_allclose(a(x).sum().item(), fb(x).item(), rtol=1e-12)
            _same(a, b)
    assert fb.stats["traces"] == 2  # momentum=None (a cumulative average) is another program


def test_replacing_a_parameter_is_detected():
    (a, oa, fa), (b, ob, fb) = _pair(lambda p: tg.optim.SGD(p, lr=0.1))
    x, y = _data()
    for _ in range(3):
        fa(x, y), fb(x, y)
    # the optimizer still holds the old parameter: it is alive, the compiled step must notice
    # that the model no longer uses it
    for m in (a, b):
        m[4].weight = nn.Parameter(tg.tensor(np.full((3, 8), 0.01)))
    for _ in range(2):
        la, lb = fa(x, y), fb(x, y)
        assert abs(la.item() - lb.item()) < 1e-10
    _same(a, b)


def test_replacing_an_optimizers_parameter_list_is_detected():
    (a, oa, fa), (b, ob, fb) = _pair(lambda p: tg.optim.SGD(p, lr=0.1))
    x, y = _data()
    for _ in range(3):
        fa(x, y), fb(x, y)
    for m, o in ((a, oa), (b, ob)):
        o.param_groups[0]["params"] = list(m[0].parameters())  # train the first layer only
    for _ in range(2):
        fa(x, y), fb(x, y)
    _same(a, b)


def test_plain_dict_param_group_is_guarded_by_value():
    w = nn.Parameter(tg.tensor(np.ones(2)))
    opt = tg.optim.SGD([w], lr=0.5)
    v = nn.Parameter(tg.tensor(np.ones(2)))
    opt.param_groups.append(
        {
            "params": [v],
            "lr": 0.5,
            "momentum": 0.0,
            "dampening": 0.0,
            "weight_decay": 0.0,
            "nesterov": False,
            "maximize": False,
        }
    )

    @tg.jit
    def step():
        opt.zero_grad()
        ((w * w).sum() + (v * v).sum()).backward()
        opt.step()

    for _ in range(3):
        step()
    before = v.detach().numpy().copy()
    opt.param_groups[1]["lr"] = 0.0
    step()
    np.testing.assert_array_equal(v.detach().numpy(), before)


def test_explain_cache_misses_names_the_guard(monkeypatch, capsys):
    monkeypatch.setenv("TRACEGRAD_EXPLAIN_CACHE_MISSES", "1")
    (a, oa, fa), (b, ob, fb) = _pair(lambda p: tg.optim.SGD(p, lr=0.1))
    x, y = _data()
    for _ in range(3):
        fb(x, y)
    capsys.readouterr()
    b.eval()
    fb(x, y)
    err = capsys.readouterr().err
    assert "training changed from True to False" in err
    ob.param_groups[0]["nesterov"] = True
    ob.param_groups[0]["momentum"] = 0.9
    fb(x, y)
    fb(x, y)
    err = capsys.readouterr().err
    assert "param_groups[0]['momentum']" in err or "param_groups[0]['nesterov']" in err


@pytest.mark.numba
def test_runtime_scalars_in_the_tape_and_the_compiled_source():
    w = nn.Parameter(tg.ones(3))
    opt = tg.optim.SGD([w], lr=0.25)

    @tg.jit
    def step():
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()

    step(), step()
    tape = step.tape()
    assert "f32[]" in str(tape).split("let")[0]  # the learning rate: a 0-d input
    assert "0.25" not in step.source()  # not a constant of the program


def test_a_number_kept_after_its_trace_raises():
    kept = []
    w = nn.Parameter(tg.ones(2))
    opt = tg.optim.SGD([w], lr=0.1)

    @tg.jit
    def f(x):
        kept.append(opt.param_groups[0]["lr"])
        return x * 2

    f(tg.ones(2))
    with pytest.raises(tg.TracerError, match="after that trace ended"):
        kept[0] * 2


def test_assigning_a_module_number_while_tracing_raises():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.decay = 0.5

        def forward(self, x):
            self.decay = self.decay * 0.9
            return x * self.decay

    m = Counter()
    with pytest.raises(tg.TracerError, match="Counter.decay"):
        tg.jit(lambda x: m(x))(tg.ones(2))
    assert m.decay == 0.5  # tracing changed nothing

    class Calls(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1  # eagerly once per call; traced, once ever: refused
            return x

    c = Calls()
    with pytest.raises(tg.TracerError, match="Calls.calls"):
        tg.jit(lambda x: c(x) * 2)(tg.ones(2))


def test_a_scheduler_stepped_inside_the_jitted_step_raises():
    w = nn.Parameter(tg.ones(2))
    opt = tg.optim.SGD([w], lr=0.1)
    sched = tg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    @tg.jit
    def step():
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
        sched.step()

    with pytest.raises(tg.TracerError, match="scheduler.step\\(\\) after the compiled step"):
        step()
        step()
    assert type(opt.param_groups[0]["lr"]) is float


def test_a_custom_optimizer_step_is_guarded_too():
    class PlainSGD(tg.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})

        def step(self):  # does not call Optimizer.step
            with tg.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.sub_(group["lr"] * p.grad)

    w = nn.Parameter(tg.tensor(np.ones(2)))
    v = nn.Parameter(tg.tensor(np.ones(2)))
    opt = PlainSGD([w], lr=0.5)

    @tg.jit
    def step():
        opt.zero_grad()
        ((w * w).sum() + (v * v).sum()).backward()
        opt.step()

    for _ in range(3):
        step()
    opt.param_groups[0]["lr"] = 0.25
    opt.add_param_group({"params": [v], "lr": 0.125})  # a new group: the step updates v now
    step()
    np.testing.assert_allclose(v.detach().numpy(), [0.75, 0.75])


def test_plain_numbers_and_guards_outside_a_trace_are_untouched():
    opt = tg.optim.SGD([nn.Parameter(tg.ones(2))], lr=0.1)
    assert type(opt.param_groups[0]["lr"]) is float
    assert isinstance(opt.param_groups[0], dict)
    m = nn.Dropout(0.25)
    tg.jit(lambda x: m(x))
    assert type(m.p) is float


# ---- values tracing would freeze ------------------------------------------------------------

_rng = np.random.default_rng(0)
_py_rng = random.Random(0)


@pytest.mark.parametrize(
    "draw",
    [
        lambda: random.random(),
        lambda: random.randint(1, 5),
        lambda: np.random.rand(),
        lambda: _rng.normal(),
        lambda: _py_rng.gauss(0, 1),
        lambda: time.time(),
        lambda: time.perf_counter(),
    ],
    ids=["random", "randint", "np.random", "Generator", "Random", "time", "perf_counter"],
)
def test_random_draws_and_the_clock_raise_while_tracing(draw):
    def f(x):
        return x * draw()

    with pytest.raises(tg.TracerError, match="traced the function"):
        tg.jit(f)(tg.ones(2))
    assert f(tg.ones(2)).shape == (2,)  # eagerly: nothing changes


def test_logging_inside_a_trace_is_fine():
    log = logging.getLogger("tracegrad-test")

    @tg.jit
    def f(x):
        log.warning("tracing")
        return x + 1

    np.testing.assert_array_equal(f(tg.ones(2)).numpy(), [2, 2])
    assert time.time() > 0  # the clock is itself again
