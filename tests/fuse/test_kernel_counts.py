"""Fusion results, asserted by counting kernels: a change that breaks fusion fails here."""

import numpy as np

import tracegrad as tg
from tracegrad.fuse import partition
from tracegrad.fuse.partition import KernelKind


def kinds(kernels):
    return [k.kind.value if k.kind is not KernelKind.CALL else k.eqn.op.name for k in kernels]


def test_value_and_grad_of_mean_square_is_one_loop():
    f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()), parallel=False)
    x = tg.randn(64, 32)
    kernels = partition(f.tape(x))
    assert kinds(kernels) == ["loop"]
    (loop,) = kernels
    assert loop.space == (64, 32)
    assert len(loop.reductions) == 1  # the value
    assert [v.shape for v in loop.materialize] == [(64, 32)]  # the gradient, written once
    assert f.source(x).count("for i0 in") == 1  # one pass over x
    value, grad = f(x)
    np.testing.assert_allclose(grad.numpy(), (4 * (2 * x.numpy() + 1) / x.numel()), rtol=1e-5)


def test_dense_relu_layer_is_blas_calls_and_one_fused_loop():
    def layer(x, w, b):
        return (x @ w + b).relu().sum()

    f = tg.jit(tg.value_and_grad(layer, argnums=(0, 1, 2)), parallel=False)
    x, w, b = tg.randn(16, 8), tg.randn(8, 4), tg.randn(4)
    kernels = partition(f.tape(x, w, b))
    # (the transposes of x and w for the backward products only need the inputs: rule 7
    # schedules them first)
    assert kinds(kernels) == ["permute", "permute", "matmul", "loop", "matmul", "matmul"]
    loop = kernels[3]
    # bias add, relu, the relu mask of the backward and the bias gradient in one pass; the only
    # array written is the gradient that the two backward matmuls read (no temporaries for
    # the bias or the activation)
    assert len(loop.body) >= 4 and len(loop.reductions) == 2
    assert len(loop.materialize) == 1
    eager = tg.value_and_grad(layer, argnums=(0, 1, 2))(x, w, b)
    got = f(x, w, b)
    np.testing.assert_allclose(got[0].numpy(), eager[0].numpy(), rtol=1e-5)
    for g, e in zip(got[1], eager[1]):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)


def test_reduction_ends_the_loop_for_its_consumers():
    f = tg.jit(lambda x: x.softmax(1), parallel=False)
    kernels = partition(f.tape(tg.randn(4, 6)))
    loops = [k for k in kernels if k.kind is KernelKind.LOOP]
    # softmax = exp(x - logsumexp(x)): the one-pass logsumexp, then the loop that needs it
    assert [(k.space, len(k.reductions), len(k.body)) for k in loops] == [
        ((4, 6), 1, 0),
        ((4, 6), 0, 2),
    ]


def test_softmax_cross_entropy_value_and_gradient_is_three_passes_or_two_with_labels():
    batch, classes = 16, 10
    logits = tg.randn(batch, classes)
    onehot = tg.tensor(np.eye(classes)[np.arange(batch) % classes], dtype=tg.float32)

    def cross_entropy(x):
        return -(x.log_softmax(1) * onehot).sum(1).mean()

    f = tg.jit(tg.value_and_grad(cross_entropy), parallel=False)
    kernels = partition(f.tape(logits))
    passes = [k for k in kernels if k.kind is KernelKind.LOOP and k.space == (batch, classes)]
    assert len(passes) <= 3
    # with class-index labels (F.cross_entropy), compiled: the labels are checked and compared
    # before the logits loops (rule 7), the pick and its gradient fuse into them: two passes
    labels = tg.tensor(np.arange(batch) % classes)
    g = tg.jit(tg.value_and_grad(tg.nn.functional.cross_entropy), parallel=False)
    kernels = partition(g.tape(logits, labels))
    passes = [k for k in kernels if k.kind is KernelKind.LOOP and k.space == (batch, classes)]
    assert len(passes) == 2
    # the label check is compiled (a call), no Python step
    calls = [(k.kind, k.eqn.op.name) for k in kernels if k.kind is not KernelKind.LOOP]
    assert (KernelKind.CALL, "index_check") in calls
    assert all(kind is KernelKind.CALL for kind, _ in calls)
    # rule 8: the one-hot mask (arange(C) == label) and the picked gradient are recomputed in
    # the second pass, not stored by the first: the only (B, C) array written is the gradient
    written = [v for k in passes for v in k.materialize if v.shape == (batch, classes)]
    assert len(written) == 1 and written[0] is g.tape(logits, labels).outputs[1]
    value, grad = g(logits, labels)
    eager_value, eager_grad = tg.value_and_grad(tg.nn.functional.cross_entropy)(logits, labels)
    np.testing.assert_allclose(value.item(), eager_value.item(), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), eager_grad.numpy(), rtol=1e-5, atol=1e-7)
    value, grad = f(logits)
    eager_value, eager_grad = tg.value_and_grad(cross_entropy)(logits)
    np.testing.assert_allclose(value.item(), eager_value.item(), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), eager_grad.numpy(), rtol=1e-5, atol=1e-7)


def test_ops_without_lowering_are_python_steps():
    f = tg.jit(lambda x, i, j: x[i, j].sum(), parallel=False)
    kernels = partition(f.tape(tg.randn(5, 3), tg.tensor([0, 2]), tg.tensor([1, 1])))
    assert kinds(kernels) == ["python", "loop"]


def test_indexing_and_embedding_lookups_are_compiled_calls():
    # basic indexing, rows picked by an index tensor (an embedding) and their gradients
    def f(w, x, i):
        return (w[i] * 2).sum() + (x[:, 1:3] ** 2).sum() + x[0, None, ::2].sum()

    g = tg.jit(tg.grad(f, argnums=(0, 1)), parallel=False)
    w, x, i = tg.randn(5, 3), tg.randn(4, 6), tg.tensor([[0, 4], [4, -1]])
    kernels = partition(g.tape(w, x, i))
    assert "python" not in kinds(kernels)
    names = {k.eqn.op.name for k in kernels if k.kind is KernelKind.CALL}
    assert {"getitem", "unindex"} <= names
    for got, want in zip(g(w, x, i), tg.grad(f, argnums=(0, 1))(w, x, i)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_cheap_values_of_smaller_arrays_are_recomputed_not_stored():
    # rule 8: v, made in the pass that reduces r, is read again by the pass after it
    batch, classes = 6, 5
    x = tg.randn(batch, classes)
    s = tg.randn(batch, 1)
    label = tg.tensor(np.arange(batch) % classes)

    def mask(label):
        return (tg.arange(classes) == label.reshape(batch, 1)).float()

    def cheap(x, s, label):  # a one-hot mask times a per-row scale: recomputed
        v = mask(label) * s
        r = (v * x).sum(1, keepdim=True)
        return x * r + v

    def reads_a_full_array(x, s, label):  # the second pass reads x instead of v: recomputed
        v = x * s
        r = v.sum(1, keepdim=True)
        return v * r

    y = tg.randn(batch, classes)

    def reads_two_full_arrays(x, s, label):  # x and y for v: one read more than v, stored
        v = x * y + s
        r = v.sum(1, keepdim=True)
        return v * r

    def not_cheap(x, s, label):  # exp at every element: stored, not recomputed
        v = (mask(label) * s).exp()
        r = (v * x).sum(1, keepdim=True)
        return x * r + v

    cases = [
        (cheap, True),
        (reads_a_full_array, True),
        (reads_two_full_arrays, False),
        (not_cheap, False),
    ]
    for fn, recomputed in cases:
        f = tg.jit(fn, parallel=False)
        tape = f.tape(x, s, label)
        passes = [k for k in partition(tape) if k.kind is KernelKind.LOOP and k.space == (6, 5)]
        assert len(passes) == 2, fn.__name__
        stored = [v for v in passes[0].materialize if v.shape == (6, 5)]
        assert (stored == []) == recomputed, fn.__name__
        np.testing.assert_allclose(f(x, s, label).numpy(), fn(x, s, label).numpy(), rtol=1e-5)


def test_an_mlp_training_step_is_segments_between_its_blas_calls():
    # DESIGN.md's claims about a compiled training step: the driver runs compiled segments
    # between the BLAS calls (3 forward matmuls, 3 weight gradients, 2 input gradients: the
    # first layer's input needs none), nothing in Python; every segment has exactly the
    # fast-math flags reassoc and contract (no nnan/ninf: NaN and inf keep their meaning)
    from tracegrad import nn
    from tracegrad.codegen.common import SegmentCode

    tg.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    opt = tg.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = tg.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = tg.jit(step)
    x, y = tg.randn(8, 20), tg.tensor([i % 10 for i in range(8)])
    f(x, y)  # the eager first call makes the momentum buffers
    f(x, y)
    steps = f._entry_for((x, y), {}).executable.steps
    segments = [s for s in steps if isinstance(s, SegmentCode)]
    others = [s.eqn.op.name for s in steps if not isinstance(s, SegmentCode)]
    assert others.count("matmul") == 8 and set(others) == {"matmul"}
    assert len(segments) <= len(others) + 1  # at most one segment per gap between them
    for seg in segments:
        decorator = next(line for line in seg.source.splitlines() if line.startswith("@njit"))
        assert "fastmath={'reassoc', 'contract'}" in decorator and "nnan" not in decorator
