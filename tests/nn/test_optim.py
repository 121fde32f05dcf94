"""SGD, Adam, AdamW against updates computed by hand in numpy (float64), and PyTorch when
installed; skipping rules, zero_grad and state dicts."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracegrad as tg

try:
    import torch
except ImportError:
    torch = None

rng = np.random.default_rng(0)
P0 = rng.standard_normal((3, 4))
GRADS = [rng.standard_normal((3, 4)) for _ in range(4)]


def run(make):
    """Four steps with fixed gradients; returns the parameter after each."""
    p = tg.tensor(P0.copy(), requires_grad=True)
    opt = make([p])
    out = []
    for g in GRADS:
        p.grad = tg.tensor(g)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def sgd_ref(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf, out = P0.copy(), None, []
    for g in GRADS:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def adam_ref(lr, b1, b2, eps, weight_decay=0.0, decoupled=False, amsgrad=False):
    p, m, v, vmax, out = P0.copy(), 0.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v) if amsgrad else v
        p = p - lr / (1 - b1**t) * m / (np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps)
        out.append(p)
    return out


CONFIGS = {
    "sgd": (lambda ps: tg.optim.SGD(ps, lr=0.1), lambda: sgd_ref(0.1)),
    "sgd-momentum-dampening-wd": (
        lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
        lambda: sgd_ref(0.1, 0.9, 0.3, 0.01),
    ),
    "sgd-nesterov": (
        lambda ps: tg.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
        lambda: sgd_ref(0.05, 0.8, nesterov=True),
    ),
    "adam": (
        lambda ps: tg.optim.Adam(ps, lr=0.01),
        lambda: adam_ref(0.01, 0.9, 0.999, 1e-8),
    ),
    "adam-wd-amsgrad": (
        lambda ps: tg.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True),
        lambda: adam_ref(0.01, 0.8, 0.99, 1e-8, 0.1, amsgrad=True),
    ),
    "adamw": (
        lambda ps: tg.optim.AdamW(ps, lr=0.01),
        lambda: adam_ref(0.01, 0.9, 0.999, 1e-8, 0.01, decoupled=True),
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_updates_match_the_formulas(name):
    make, ref = CONFIGS[name]
    for got, want in zip(run(make), ref()):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_updates_match_pytorch(name):
    make, _ = CONFIGS[name]

    def run_torch():
        p = torch.tensor(P0.copy(), requires_grad=True)
        opt = _torch_twin(name, [p])
        out = []
        for g in GRADS:
            p.grad = torch.tensor(g)
            opt.step()
            out.append(p.detach().numpy().copy())
        return out

    for got, want in zip(run(make), run_torch()):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _torch_twin(name, ps):
    return {
        "sgd": lambda: torch.optim.SGD(ps, lr=0.1),
        "sgd-momentum-dampening-wd": lambda: torch.optim.SGD(
            ps, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01
        ),
        "sgd-nesterov": lambda: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
        "adam": lambda: torch.optim.Adam(ps, lr=0.01),
        "adam-wd-amsgrad": lambda: torch.optim.Adam(
            ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True
        ),
        "adamw": lambda: torch.optim.AdamW(ps, lr=0.01),
    }[name]()


def test_frozen_and_gradless_parameters_are_skipped():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([3.0, 4.0], requires_grad=True)
    opt = tg.optim.Adam([a, b], lr=0.1)
    (a * a).sum().backward()
    opt.step()
    assert b.tolist() == [3.0, 4.0] and b not in opt.state
    assert a.tolist() != [1.0, 2.0]


def test_zero_grad_and_param_groups():
    a = tg.tensor([1.0], requires_grad=True)
    b = tg.tensor([1.0], requires_grad=True)
    opt = tg.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    (a + b).sum().backward()
    opt.step()
    assert a.item() == pytest.approx(0.9) and b.item() == pytest.approx(0.0)
    opt.zero_grad(set_to_none=False)
    assert a.grad.item() == 0.0
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_state_dict_round_trip_continues_identically():
    make, _ = CONFIGS["adam"]
    p = tg.tensor(P0.copy(), requires_grad=True)
    opt = make([p])
    for g in GRADS[:2]:
        p.grad = tg.tensor(g)
        opt.step()
    saved = opt.state_dict()
    assert saved["state"][0]["step"].item() == 2.0
    assert saved["param_groups"][0]["params"] == [0]
    q = tg.tensor(p.detach().numpy().copy(), requires_grad=True)
    opt2 = make([q])
    opt2.load_state_dict(saved)
    for g in GRADS[2:]:
        p.grad, q.grad = tg.tensor(g), tg.tensor(g)
        opt.step()
        opt2.step()
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_errors_are_pytorchs():
    with pytest.raises(ValueError, match="empty parameter list"):
        tg.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        tg.optim.Adam([tg.zeros(1, requires_grad=True)], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        tg.optim.SGD([tg.zeros(1, requires_grad=True)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="non-leaf"):
        tg.optim.SGD([tg.zeros(1, requires_grad=True) * 2], lr=0.1)
    with pytest.raises(TypeError, match="wrap it in a list"):
        tg.optim.SGD(tg.zeros(1, requires_grad=True), lr=0.1)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    dtype=st.sampled_from([np.float32, np.float64]),
    decoupled=st.booleans(),
    amsgrad=st.booleans(),
    maximize=st.booleans(),
    lr=st.sampled_from([1e-3, 0.1, 3]),
    beta1=st.sampled_from([0.9, 0.3, 0.0]),  # 0.3: lerp's other form (weight >= 0.5)
    beta2=st.sampled_from([0.999, 0.5]),
    wd=st.sampled_from([0.0, 0.01, 1]),
    seed=st.integers(0, 2**16),
)
def test_adam_on_arrays_equals_the_tensor_form_bit_for_bit(
    shape, dtype, decoupled, amsgrad, maximize, lr, beta1, beta2, wd, seed
):
    # eagerly, Adam updates the arrays directly (optim/adam.py: _update_arrays, one fused
    # kernel where it applies); the tensor form is what tg.jit traces. All three must give the
    # same bits, step after step. (A MonkeyPatch per example: hypothesis reuses a fixture's.)
    import tracegrad.optim.adam as adam

    rng = np.random.default_rng(seed)
    start = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) * s for s in (1, 0, 1e-3, 50)]
    results = []
    fused_calls = []
    real_fused = adam._adam_fused
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adam, "_adam_fused", lambda *a: (fused_calls.append(1), real_fused(*a)))
        for form in ("fused", "numpy", "tensor"):
            if form == "numpy":
                mp.setattr(adam, "_fused", lambda *a: False)
            if form == "tensor":
                mp.setattr(adam, "_plain_arrays", lambda *a: False)
            p = tg.tensor(start.copy(), requires_grad=True)
            cls = tg.optim.AdamW if decoupled else tg.optim.Adam
            opt = cls(
                [p],
                lr=lr,
                betas=(beta1, beta2),
                weight_decay=wd,
                amsgrad=amsgrad,
                maximize=maximize,
            )
            for g in grads:
                p.grad = tg.tensor(g)
                opt.step()
            state = opt.state[p]
            results.append([p.detach().numpy().copy()] + [state[k].numpy().copy() for k in state])
    assert len(fused_calls) == (0 if amsgrad or maximize else len(grads))
    for a, b, c in zip(*results):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
        assert a.dtype == b.dtype == c.dtype


def test_gradients_are_laid_out_as_their_parameters():
    # PyTorch's gradient layout contract: a Linear weight's gradient (computed as a transposed
    # product) is C-contiguous like the weight, so optimizers and users get plain arrays
    lin = tg.nn.Linear(3, 4)
    x = tg.randn(5, 3)
    lin(x).sum().backward()
    g = lin.weight.grad.numpy()
    assert g.flags.c_contiguous
    np.testing.assert_allclose(g, np.tile(x.numpy().sum(0), (4, 1)), rtol=1e-6)


def test_adam_hyperparameters_changed_between_eager_steps_take_effect():
    # the fused eager pass reads lr, betas, eps and weight_decay at every step: changing them
    # (a scheduler, a user) must give the tensor form's bits, not the first step's numbers
    import tracegrad.optim.adam as adam

    rng = np.random.default_rng(0)
    start = rng.standard_normal((64, 65)).astype(np.float32)
    grads = [rng.standard_normal(start.shape).astype(np.float32) for _ in range(4)]
    changes = [
        {},
        {"lr": 0.3},
        {"betas": (0.5, 0.9), "eps": 1e-3},
        {"weight_decay": 0.5, "lr": 0.01},
    ]
    results = []
    for tensor_form in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            if tensor_form:
                mp.setattr(adam, "_plain_arrays", lambda *a: False)
            p = tg.tensor(start.copy(), requires_grad=True)
            opt = tg.optim.AdamW([p], lr=0.1)
            for g, change in zip(grads, changes):
                opt.param_groups[0].update(change)
                p.grad = tg.tensor(g)
                opt.step()
            results.append(p.detach().numpy().copy())
    np.testing.assert_array_equal(results[0], results[1])
    # and the changes mattered: the same steps without them end elsewhere
    p = tg.tensor(start.copy(), requires_grad=True)
    opt = tg.optim.AdamW([p], lr=0.1)
    for g in grads:
        p.grad = tg.tensor(g)
        opt.step()
    assert not np.array_equal(p.detach().numpy(), results[0])
