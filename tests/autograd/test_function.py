"""tg.autograd.Function: custom gradients, eagerly, to higher order and inside tg.jit."""

from __future__ import annotations

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.autograd import Function, once_differentiable

r = np.random.default_rng(0)


def _x(*shape):
    return tg.tensor(r.standard_normal(shape), requires_grad=True)


class MyReLU(Function):  # PyTorch's tutorial, unchanged but for the import
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


class Cube(Function):  # a differentiable backward: second order works
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return scale * x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.scale * 3 * x**2, None


class SinCos(Function):  # two outputs
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, gs, gc):
        (x,) = ctx.saved_tensors
        return gs * x.cos() - gc * x.sin()


def test_custom_relu_matches_the_builtin():
    x = _x(4, 5)
    y = MyReLU.apply(x)
    assert y.grad_fn.name() == "MyReLUBackward"
    assert y.grad_fn.next_functions[0][0] is x._get_accumulator()
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.maximum(x.detach().numpy(), 0))
    assert tg.gradcheck(MyReLU.apply, [_x(3, 3)])


def test_non_tensor_arguments_and_second_order():
    x = _x(3)
    assert tg.gradcheck(lambda x: Cube.apply(x, 2.0), [x])
    assert tg.gradgradcheck(lambda x: Cube.apply(x, 2.0), [x])
    (d,) = tg.autograd.grad(Cube.apply(x, 2.0).sum(), x, create_graph=True)
    (dd,) = tg.autograd.grad(d.sum(), x)
    np.testing.assert_allclose(dd.numpy(), 12 * x.detach().numpy())


def test_several_outputs():
    x = _x(5)
    s, c = SinCos.apply(x)
    assert s.grad_fn.name() == c.grad_fn.name() == "SinCosBackward"
    assert c.grad_fn.next_functions == ((s.grad_fn, 1),)
    (2 * s + 3 * c).sum().backward()
    a = x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(a) - 3 * np.sin(a))
    x.grad = None
    SinCos.apply(x)[1].sum().backward()  # one output used: the other's cotangent is zeros
    np.testing.assert_allclose(x.grad.numpy(), -np.sin(a))
    assert tg.gradcheck(lambda x: SinCos.apply(x), [_x(3)])
    (g,) = tg.autograd.grad(SinCos.apply(x)[1].sum(), [x])
    np.testing.assert_allclose(g.numpy(), -np.sin(a))


def test_needs_input_grad_non_differentiable_and_setup_context():
    seen = {}

    class Sort(Function):
        @staticmethod
        def forward(x, y):
            order = np.argsort(x.detach().numpy(), kind="stable")
            return x[tg.tensor(order)] * y, tg.tensor(order)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.order = output[1]
            ctx.mark_non_differentiable(output[1])
            seen["needs"] = ctx.needs_input_grad

        @staticmethod
        def backward(ctx, g, g_order):
            inv = np.argsort(ctx.order.numpy())
            return g[tg.tensor(inv)], None

    x = _x(4)
    vals, order = Sort.apply(x, 2.0)
    assert seen["needs"] == (True, False)
    assert not order.requires_grad and vals.requires_grad
    vals.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones(4))


def test_errors():
    class WrongCount(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(RuntimeError, match="incorrect number of gradients \\(expected 2, got 1"):
        WrongCount.apply(_x(2), _x(2)).sum().backward()

    class WrongShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return tg.ones(7)

    with pytest.raises(RuntimeError, match="invalid gradient at index 0"):
        WrongShape.apply(_x(2, 3)).sum().backward()

    class Broadcast(Function):  # a gradient that broadcasts to the input is summed down
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, g):
            return g * tg.ones(4, 2, 3, dtype=tg.float64)

    x = _x(2, 3)
    Broadcast.apply(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 4.0))

    x = _x(3)
    y = MyReLU.apply(x)
    with tg.no_grad():
        x.add_(1)  # changes a saved tensor
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()

    y = Cube.apply(_x(3), 1.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    with pytest.raises(RuntimeError, match="static forward"):
        MyReLU()


def test_once_differentiable_runs_backward_without_grad():
    class Sq(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            out = 2 * x * g
            assert out.grad_fn is None
            return out

    x = _x(3)
    (g,) = tg.autograd.grad(Sq.apply(x).sum(), x, create_graph=True)
    assert not g.requires_grad


def test_functions_inside_jit_equal_eager():
    def loss(w, x):
        s, c = SinCos.apply(MyReLU.apply(x @ w))
        return (s * c).sum() + Cube.apply(w, 0.5).sum()

    w, x = _x(3, 2), tg.tensor(r.standard_normal((4, 3)))
    want_v, want_g = tg.value_and_grad(loss)(w, x)
    got_v, got_g = tg.jit(tg.value_and_grad(loss))(w.detach(), x)
    np.testing.assert_allclose(got_v.item(), want_v.item(), rtol=1e-12)
    np.testing.assert_allclose(got_g.numpy(), want_g.detach().numpy(), rtol=1e-12)


def test_a_jitted_training_step_with_a_custom_function():
    x = tg.tensor(r.standard_normal((5, 3)))

    def run(compiled):
        tg.manual_seed(0)
        lin = tg.nn.Linear(3, 2).double()
        opt = tg.optim.SGD(lin.parameters(), lr=0.1)

        def step(x):
            opt.zero_grad()
            loss = MyReLU.apply(lin(x)).pow(2).sum()
            loss.backward()
            opt.step()
            return loss

        f = tg.jit(step) if compiled else step
        return [f(x).item() for _ in range(3)]

    np.testing.assert_allclose(run(True), run(False), rtol=1e-12)
