"""Compiled PyTorch-style training steps: `tg.jit` over zero_grad / forward / backward / step,
with parameters, .grad, optimizer buffers and BatchNorm statistics as captured state."""

from __future__ import annotations

import numpy as np

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn

rng = np.random.default_rng(0)


def mlp():
    tg.manual_seed(1)
    return nn.Sequential(
        nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def cnn():
    tg.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


def train(model_fn, opt_fn, batches, compiled):
    model = model_fn()
    opt = opt_fn(model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = tg.jit(step) if compiled else step
    losses = [f(x, y).item() for x, y in batches]
    return model, losses, f


def batches(shape, classes, sizes):
    return [
        (
            tg.tensor(rng.standard_normal((n,) + shape).astype(np.float32)),
            tg.tensor(rng.integers(0, classes, n)),
        )
        for n in sizes
    ]


def assert_same_state(a, b, tol=1e-5):
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(w.numpy(), v.numpy(), rtol=tol, atol=tol, err_msg=k)


def test_mlp_with_adam_jitted_equals_eager_after_ten_steps():
    data = batches((6,), 3, [8] * 10)
    make_opt = lambda ps: tg.optim.Adam(ps, lr=0.01, weight_decay=0.01)
    eager, eager_losses, _ = train(mlp, make_opt, data, compiled=False)
    jitted, jit_losses, f = train(mlp, make_opt, data, compiled=True)
    np.testing.assert_allclose(jit_losses, eager_losses, rtol=1e-5)
    assert_same_state(eager, jitted)
    # Adam's moments are made on the first step: that call ran eagerly, the rest compiled
    assert f.stats["eager_calls"] == 1 and f.stats["traces"] == 1
    assert f.stats["memory_hits"] == 8


def test_cnn_with_batchnorm_and_nesterov_jitted_equals_eager_across_batch_sizes():
    # (batch sizes unlike the channel counts: a size that coincides with another dim can fuse
    # differently, and then recompiles the segments that changed; docs/compiler.md)
    data = batches((1, 8, 8), 5, [7, 7, 7, 7, 7, 7, 9, 9, 9, 9])
    make_opt = lambda ps: tg.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    eager, eager_losses, _ = train(cnn, make_opt, data, compiled=False)
    jitted, jit_losses, f = train(cnn, make_opt, data, compiled=True)
    np.testing.assert_allclose(jit_losses, eager_losses, rtol=1e-5)
    assert_same_state(eager, jitted)  # includes running statistics and num_batches_tracked
    assert int(jitted[1].num_batches_tracked) == 10
    # two batch sizes: two traces, but the kernels compiled for the first are reused
    assert f.stats["traces"] == 2
    compiled = f.stats["compiles"] + f.stats["disk_hits"]
    assert compiled > 0
    f(*batches((1, 8, 8), 5, [11])[0])
    assert f.stats["traces"] == 3
    assert f.stats["compiles"] + f.stats["disk_hits"] == compiled


def test_frozen_body_under_jit_only_the_head_learns():
    model = cnn()
    for p in model.parameters():
        p.requires_grad = False
    model[9] = nn.Linear(6, 5)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step = tg.jit(step)
    for x, y in batches((1, 8, 8), 5, [4, 4, 4]):
        step(x, y)
    after = model.state_dict()
    for k, v in before.items():
        changed = not np.array_equal(after[k].numpy(), v)
        if k.startswith("9."):
            assert changed, k
        elif "running" in k or "num_batches" in k:
            assert changed, k  # training mode: BatchNorm statistics still update
        else:
            assert not changed, k
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("9."))


def test_functional_grad_equals_backward_through_a_model():
    model = cnn().eval()
    x = tg.tensor(rng.standard_normal((2, 1, 8, 8)))
    model.double()

    def f(inp):
        return F.cross_entropy(model(inp), tg.tensor([1, 3]))

    g = tg.grad(f)(x)
    xr = x.clone().requires_grad_(True)
    f(xr).backward()
    np.testing.assert_allclose(g.numpy(), xr.grad.numpy(), rtol=1e-12)
    assert tg.gradcheck(f, (xr,))


def test_dropout_in_a_jitted_training_step_equals_eager():
    def run(compiled):
        tg.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        model = model.double()
        opt = tg.optim.SGD(model.parameters(), lr=0.1)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        f = tg.jit(step) if compiled else step
        x, y = tg.tensor(np.ones((8, 4))), tg.tensor(np.arange(8) % 3)
        losses = [f(x, y).item() for _ in range(4)]
        model[2].p = 0.6  # a runtime scalar: takes effect, no retrace
        losses += [f(x, y).item() for _ in range(2)]
        model.eval()
        losses += [f(x, y).item()]
        return losses, model

    (la, ma), (lb, mb) = run(False), run(True)
    np.testing.assert_allclose(lb, la, rtol=1e-12)
    assert len(set(la[:4])) == 4  # a new mask every step
    for p, q in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-12)
