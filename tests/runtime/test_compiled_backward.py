"""A jitted function as a differentiable block: compiled forward, `CompiledFunctionBackward`
running a compiled backward, `tg.jit(module)` in an ordinary training loop, transforms over
jitted functions. Compared with eager throughout.

Most tests run the two programs on the reference interpreter (what is tested here is the joint
trace, the split, the node and the cache, not Numba's code); the tests marked `numba` run them
compiled."""

import os
import subprocess
import sys
import textwrap

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import EXAMPLES
from random_programs import programs, run_program

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn
from tracegrad.tape.split import split_joint


@pytest.fixture(autouse=True)
def interpreter(request, monkeypatch):
    if "numba" not in request.keywords:
        monkeypatch.setenv("TRACEGRAD_EXECUTOR", "interpreter")


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(
        a.detach().numpy() if isinstance(a, tg.Tensor) else a,
        b.detach().numpy() if isinstance(b, tg.Tensor) else b,
        rtol=tol,
        atol=tol,
    )


# --------------------------------------------------------------------------------------------
# random programs: gradients through the compiled pair == eager


@settings(
    max_examples=max(EXAMPLES * 4, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(program=programs(), data=st.data())
def test_random_programs_compiled_backward_equals_eager(program, data):
    (sx, sy), steps = program
    x = data.draw(hnp.arrays(np.float64, sx, elements=st.floats(-1.5, 1.5, width=32)))
    y = data.draw(hnp.arrays(np.float64, sy, elements=st.floats(-1.5, 1.5, width=32)))
    # x an argument, y captured (a parameter the function reads), both given gradients
    yc = tg.tensor(y, requires_grad=True)
    f = tg.jit(lambda a: run_program(steps, a, yc))
    xa = tg.tensor(x, requires_grad=True)
    out = f(xa)
    assert out.grad_fn.name() == "CompiledFunctionBackward"
    out.backward()
    xe, ye = tg.tensor(x, requires_grad=True), tg.tensor(y, requires_grad=True)
    expected = run_program(steps, xe, ye)
    expected.backward()
    close(out, expected)
    close(xa.grad, xe.grad)
    close(yc.grad, ye.grad)
    assert f.stats["eager_calls"] == 0


# --------------------------------------------------------------------------------------------
# the node


def test_node_names_edges_and_accumulation():
    w = tg.tensor([1.0, -2.0, 3.0], dtype=tg.float64, requires_grad=True)
    frozen = tg.tensor([2.0, 2.0, 2.0], dtype=tg.float64)
    f = tg.jit(lambda x: ((x * w).sin() * frozen).sum())
    a = tg.tensor([0.5, 0.1, -0.3], dtype=tg.float64, requires_grad=True)
    x = a * 2  # a non-leaf input: the gradient continues into its graph
    out = f(x)
    node = out.grad_fn
    assert node.name() == "CompiledFunctionBackward"
    nexts = [n for n, _ in node.next_functions]
    assert nexts[0] is x.grad_fn and nexts[1].name() == "AccumulateGrad"
    assert nexts[1].variable is w  # the captured parameter's accumulator; frozen gets none
    out.backward()
    f(a * 2).backward()  # accumulates, as eager
    ae = tg.tensor([0.5, 0.1, -0.3], dtype=tg.float64, requires_grad=True)
    we = tg.tensor([1.0, -2.0, 3.0], dtype=tg.float64, requires_grad=True)
    for _ in range(2):
        ((ae * 2 * we).sin() * frozen).sum().backward()
    close(a.grad, ae.grad)
    close(w.grad, we.grad)
    assert frozen.grad is None


def test_several_outputs_and_an_unused_one():
    w = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    f = tg.jit(lambda x: (x * w, (x + w).exp(), 3))
    x = tg.tensor([0.3, -0.2], dtype=tg.float64, requires_grad=True)
    p, q, n = f(x)
    assert n == 3 and q.grad_fn.name() == "CompiledFunctionBackward"
    q.sum().backward()  # p's cotangent is zero
    close(x.grad, (x + w).exp())
    close(w.grad, (x + w).exp())
    p2, q2, _ = f(x)
    x.grad = w.grad = None
    (p2 * q2).sum().backward()
    xe, we = tg.tensor([0.3, -0.2], dtype=tg.float64, requires_grad=True), w.detach()
    we.requires_grad_()
    (xe * we * (xe + we).exp()).sum().backward()
    close(x.grad, xe.grad)
    close(w.grad, we.grad)


def test_retain_graph_as_eager():
    w = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    f = tg.jit(lambda x: (x * w).tanh().sum())
    x = tg.tensor([0.3, -0.2], dtype=tg.float64)
    out = f(x)
    out.backward(retain_graph=True)
    out.backward()
    expected = 2 * (1 - (x * w).tanh() ** 2) * x
    close(w.grad, expected)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()


def test_in_place_change_of_a_saved_tensor_raises_as_eager():
    f = tg.jit(lambda x: (x * x).sum())
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    y = x * 1  # a non-leaf input the backward saves
    out = f(y)
    with tg.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()
    # a saved output changed in place
    g = tg.jit(lambda x: x.exp())
    e = g(x)
    with tg.no_grad():
        e.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        e.sum().backward()


def test_a_parameter_changed_in_place_between_forward_and_backward_raises():
    w = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    f = tg.jit(lambda x: (x * w).sin().sum())
    out = f(tg.tensor([0.5, 0.5], dtype=tg.float64, requires_grad=True))
    with tg.no_grad():
        w.sub_(0.1)  # an optimizer step before backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_frozen_parameters_get_no_gradient_and_no_work():
    lin = nn.Linear(3, 2).double()
    cm = tg.jit(lin)
    x = tg.randn(4, 3, dtype=tg.float64)
    cm(x).sum().backward()
    assert lin.weight.grad is not None
    lin.weight.requires_grad_(False)
    lin.bias.grad = None
    lin.weight.grad = None
    cm(x).sum().backward()  # a guard: retraced, the weight's gradient is not computed
    assert lin.weight.grad is None
    close(lin.bias.grad, np.full(2, 4.0))
    entry = cm._jit._cache[next(iter(cm._jit._cache))][0]
    assert len(entry.program.wrt_captured) == 1  # the bias only


def test_no_grad_runs_the_forward_only_program():
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    f = tg.jit(lambda x: (x * w).sum())
    f(tg.ones(2))
    with tg.no_grad():
        out = f(tg.ones(2))
    assert out.grad_fn is None and not out.requires_grad
    assert f.stats["traces"] == 2  # grad mode is part of the key
    entry = f._cache[next(k for k in f._cache if k[2] is False)][0]
    assert not hasattr(entry, "program")


def test_higher_order_through_a_jitted_function():
    f = tg.jit(lambda x: (x.sin() * x).sum())
    x = tg.randn(3, dtype=tg.float64, requires_grad=True)
    assert tg.gradcheck(f, (x,))
    assert tg.gradgradcheck(f, (x,))
    close(tg.hessian(f)(x.detach()), tg.hessian(lambda x: (x.sin() * x).sum())(x.detach()))


def test_transforms_over_a_jitted_function_compile_both_passes():
    w = tg.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=tg.float64)
    f = tg.jit(lambda x: (x @ w).tanh().sum())
    x = tg.tensor([0.2, 0.4], dtype=tg.float64)
    value, g = tg.value_and_grad(f)(x)
    ve, ge = tg.value_and_grad(lambda x: (x @ w).tanh().sum())(x)
    close(value, ve)
    close(g, ge)
    _, pull = tg.vjp(f, x)
    close(pull(tg.tensor(2.0, dtype=tg.float64))[0], 2 * ge)
    assert f.stats["eager_calls"] == 0 and f.stats["traces"] == 1


def test_create_graph_through_a_function_that_writes_state_is_refused():
    bn = nn.BatchNorm1d(3).double()
    cm = tg.jit(bn)
    x = tg.randn(4, 3, dtype=tg.float64, requires_grad=True)
    y = cm(x)
    with pytest.raises(RuntimeError, match="changes state"):
        tg.autograd.grad(y.pow(2).sum(), x, create_graph=True)


# --------------------------------------------------------------------------------------------
# the split: residuals


def test_split_recomputes_cheap_values_instead_of_storing_them():
    w = tg.randn(1000, dtype=tg.float64, requires_grad=True)

    def f(x):
        return ((x * w).sin() * 3).sum()

    def joint(x, g):
        y = f(x)
        (gw,) = tg.autograd.grad(y, w, g)
        return y, gw

    x = tg.randn(1000, dtype=tg.float64)
    tape = tg.make_tape(joint)(x, tg.tensor(1.0, dtype=tg.float64))
    split = split_joint(tape, 1, 1)
    # the backward needs cos(x * w): recomputed from x and w (inputs, free to keep), not stored
    assert split.residual_bytes == 0 and split.saved_bytes >= 8000
    assert {r.kind for r in split.residuals} <= {"arg", "captured"}
    assert any(e.op.name == "cos" for e in split.backward.eqns)
    assert all(e.op.name != "cos" for e in split.forward.eqns)


# --------------------------------------------------------------------------------------------
# tg.jit(module) in an ordinary loop == eager (compiled)


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    )


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


def _resnet():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        _Block(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


@pytest.mark.numba
@pytest.mark.parametrize("build, opt", [(_cnn, "sgd"), (_resnet, "adam")], ids=["cnn", "resnet"])
def test_compiled_module_trains_as_eager(build, opt):
    tg.manual_seed(0)
    eager = build().double()
    compiled = build().double()
    compiled.load_state_dict(eager.state_dict())
    cm = tg.jit(compiled)
    assert isinstance(cm, nn.Module)
    assert list(cm.state_dict()) == list(eager.state_dict())
    assert all(p is q for p, q in zip(cm.parameters(), compiled.parameters()))

    def make_opt(m):
        if opt == "sgd":
            return tg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        return tg.optim.Adam(m.parameters(), lr=0.01)

    oe, oc = make_opt(eager), make_opt(cm)
    x = tg.randn(6, 1, 6, 6, dtype=tg.float64)
    y = tg.tensor([0, 1, 2, 0, 1, 2])
    for step in range(4):
        if step == 3:  # eval mode: the guard retraces; running stats are read, not written
            eager.eval()
            cm.eval()
            assert not cm.training
        for m, o in ((eager, oe), (cm, oc)):
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            o.step()
        for (k, a), b in zip(eager.state_dict().items(), cm.state_dict().values()):
            close(b, a)  # parameters and BatchNorm's running statistics
    assert cm.stats["eager_calls"] == 0 and cm.stats["traces"] == 2


@pytest.mark.numba
def test_jitted_optimizer_step_in_a_compiled_module_loop():
    tg.manual_seed(1)
    eager = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 3)).double()
    compiled = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 3)).double()
    compiled.load_state_dict(eager.state_dict())
    cm = tg.compile(compiled)
    oe = tg.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    oc = tg.optim.SGD(compiled.parameters(), lr=0.05, momentum=0.9)
    step = tg.jit(oc.step)
    x = tg.randn(7, 5, dtype=tg.float64)
    y = tg.tensor([0, 1, 2, 0, 1, 2, 0])
    for i in range(5):
        if i == 3:
            for o in (oe, oc):
                o.param_groups[0]["lr"] = 0.01  # a runtime scalar of the compiled step
        oe.zero_grad()
        F.cross_entropy(eager(x), y).backward()
        oe.step()
        oc.zero_grad()
        F.cross_entropy(cm(x), y).backward()
        step()
    for a, b in zip(eager.parameters(), compiled.parameters()):
        close(b, a)
    assert step.stats["traces"] == 1 and step.stats["eager_calls"] == 1  # the buffers' step


def test_compile_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="backend"):
        tg.compile(nn.Linear(2, 2), backend="aot_eager")
    with pytest.raises(ValueError, match="mode"):
        tg.compile(nn.Linear(2, 2), mode="fast")
    m = nn.Linear(2, 2)
    assert tg.compile(m, disable=True) is m
    assert isinstance(tg.compile(m, fullgraph=True, dynamic=True), nn.Module)


# --------------------------------------------------------------------------------------------
# both programs are cached on disk


@pytest.mark.numba
def test_disk_cache_holds_both_programs(tmp_path):
    script = textwrap.dedent(
        """
        import tracegrad as tg
        w = tg.ones(3, requires_grad=True)
        f = tg.jit(lambda x: (x * w).sin().sum())
        f(tg.ones(3)).backward()
        print(f.stats["compiles"], f.stats["disk_hits"], w.grad.numpy().round(4).tolist())
        """
    )
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=str(tmp_path))
    env.pop("TRACEGRAD_EXECUTOR", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.split(maxsplit=2)
        for _ in range(2)
    ]
    assert runs[0][:2] == ["2", "0"]  # the forward and the backward program
    assert runs[1][:2] == ["0", "2"]
    assert runs[0][2] == runs[1][2]


# --------------------------------------------------------------------------------------------
# state changed between calls takes effect


def test_an_argument_that_starts_requiring_grad_gets_its_gradient():
    w = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    f = tg.jit(lambda x: (x * w).sin().sum())
    x = tg.tensor([0.3, 0.4], dtype=tg.float64)
    f(x).backward()
    assert x.grad is None
    x.requires_grad_()
    f(x).backward()  # requires_grad is part of the key: a new trace gives x its gradient
    close(x.grad, (x * w).cos().detach() * w.detach())
    assert f.stats["traces"] == 2
    x.requires_grad_(False)
    assert f(x).grad_fn is not None and f.stats["traces"] == 2  # the first entry again


def test_a_jitted_step_after_grads_were_cleared_or_replaced():
    p = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    opt = tg.optim.SGD([p], lr=0.5)
    step = tg.jit(opt.step)
    p.grad = tg.tensor([1.0, 1.0], dtype=tg.float64)
    step()
    close(p, [0.5, 1.5])
    p.grad = tg.tensor([2.0, -2.0], dtype=tg.float64)  # a new .grad object: read through p
    step()
    close(p, [-0.5, 2.5])
    p.grad = None  # SGD skips a parameter without a gradient: the guard retraces
    step()
    close(p, [-0.5, 2.5])
    assert step.stats["traces"] == 2
