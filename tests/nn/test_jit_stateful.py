"""A jitted training step against an eager twin while a user changes everything between calls.

Hypothesis drives a state machine: between calls of the compiled step it changes the learning
rate, momentum, weight decay, betas, toggles train/eval, freezes and unfreezes a layer, swaps a
parameter object, changes the batch size and steps a scheduler -- each change made to both
twins -- and after every call asserts that the jitted model equals the eager one (float64,
1e-10). Any state read once at trace time and frozen fails here (docs/jit.md, "Python state").
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn

OPTIMIZERS = {
    "sgd": lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda p: tg.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: tg.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


def _model(seed: int) -> nn.Module:
    tg.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Dropout(p=0.0), nn.Linear(8, 3)
    ).double()


class Twin:
    def __init__(self, kind: str, compiled: bool) -> None:
        self.model = _model(0)
        self.opt = OPTIMIZERS[kind](self.model.parameters())
        self.sched = tg.optim.lr_scheduler.StepLR(self.opt, step_size=2, gamma=0.7)
        model, opt = self.model, self.opt

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        self.step = tg.jit(step) if compiled else step


class JitAgainstEager(RuleBasedStateMachine):
    @initialize(kind=st.sampled_from(sorted(OPTIMIZERS)))
    def build(self, kind):
        self.kind = kind
        self.eager = Twin(kind, compiled=False)
        self.jitted = Twin(kind, compiled=True)
        self.rng = np.random.default_rng(0)
        self.batch = 6
        self.loss_gap = 0.0

    def both(self, fn):
        """Make a change to both twins, then call both steps (the invariant compares them)."""
        fn(self.eager)
        fn(self.jitted)
        self.call()

    @rule()
    def call(self):
        x = tg.tensor(self.rng.standard_normal((self.batch, 4)))
        y = tg.tensor(self.rng.integers(0, 3, self.batch))
        a = self.eager.step(x, y).item()
        b = self.jitted.step(x, y).item()
        self.loss_gap = abs(a - b)

    @rule(lr=st.sampled_from([0.0, 1e-3, 0.05, 0.2]))
    def set_lr(self, lr):
        self.both(lambda t: t.opt.param_groups[0].__setitem__("lr", lr))

    @precondition(lambda self: self.kind == "sgd")
    @rule(momentum=st.sampled_from([0.0, 0.5, 0.9]), nesterov=st.booleans())
    def set_momentum(self, momentum, nesterov):
        nesterov = nesterov and momentum > 0
        self.both(lambda t: t.opt.param_groups[0].update(momentum=momentum, nesterov=nesterov))

    @rule(wd=st.sampled_from([0.0, 1e-3, 0.1]))
    def set_weight_decay(self, wd):
        self.both(lambda t: t.opt.param_groups[0].__setitem__("weight_decay", wd))

    @precondition(lambda self: self.kind != "sgd")
    @rule(b1=st.sampled_from([0.5, 0.9]), b2=st.sampled_from([0.9, 0.999]))
    def set_betas(self, b1, b2):
        self.both(lambda t: t.opt.param_groups[0].__setitem__("betas", (b1, b2)))

    @rule(training=st.booleans())
    def train_or_eval(self, training):
        self.both(lambda t: t.model.train(training))

    @rule(frozen=st.booleans())
    def freeze_first_layer(self, frozen):
        self.both(lambda t: [p.requires_grad_(not frozen) for p in t.model[0].parameters()])

    @rule()
    def swap_a_parameter(self):
        def swap(t):
            old = t.model[4].bias
            t.model[4].bias = nn.Parameter(old.detach().clone())

        self.both(swap)

    @rule(batch=st.sampled_from([4, 6]))
    def set_batch_size(self, batch):
        self.batch = batch
        self.call()

    @rule()
    def scheduler_step(self):
        with warnings.catch_warnings():  # a schedule stepped before the first step: allowed
            warnings.simplefilter("ignore", UserWarning)
            self.both(lambda t: t.sched.step())

    @invariant()
    def jitted_equals_eager(self):
        if not hasattr(self, "eager"):
            return
        assert self.loss_gap < 1e-10
        a = self.eager.model.state_dict()
        b = self.jitted.model.state_dict()
        for name in a:
            np.testing.assert_allclose(
                b[name].numpy(), a[name].numpy(), rtol=1e-10, atol=1e-10, err_msg=name
            )
        assert self.eager.opt.param_groups[0]["lr"] == self.jitted.opt.param_groups[0]["lr"]


JitAgainstEager.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    # the compiled programs run on the reference interpreter: what is under test is what the
    # cache reads and guards, which is the same for every executor (tests/runtime/
    # test_python_state.py checks runtime scalars through Numba-compiled code)
    monkeypatch.setenv("TRACEGRAD_EXECUTOR", "interpreter")


TestJitAgainstEager = JitAgainstEager.TestCase
