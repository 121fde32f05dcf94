"""Functional transforms: grad, value_and_grad, vjp, jvp, jacobian, hessian, on pytrees,
composed, against closed forms and against each other."""

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.autograd.pytree import flatten, tree_map, unflatten


def close(t, expected, tol=1e-5):
    got = t.detach().numpy() if isinstance(t, tg.Tensor) else t
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=tol, atol=tol)


def f3(x):
    return ((2 * x + 1) ** 2).mean()


X3 = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_grad_equals_backward():
    x = tg.tensor(X3, requires_grad=True)
    f3(x).backward()
    g = tg.grad(f3)(tg.tensor(X3))
    close(g, x.grad.numpy())
    assert g.grad_fn is None and not g.requires_grad


def test_grad_accepts_numpy_and_python_numbers():
    close(tg.grad(lambda x: x**3)(2.0), 12.0)
    g = tg.grad(lambda x: (x**2).sum())(np.array([1.0, 2.0]))
    assert g.dtype == np.float64
    close(g, [2.0, 4.0])


def test_grad_rejects_integers_and_non_scalars():
    with pytest.raises(TypeError, match="floating point"):
        tg.grad(lambda x: x * 2)(2)
    with pytest.raises(TypeError, match="scalar output"):
        tg.grad(lambda x: x * 2)(tg.ones(3))


def test_argnums_tuple_and_has_aux():
    def f(x, y, z):
        return (x * y).sum() + z, {"aux": x * 2}

    x, y = tg.tensor([1.0, 2.0]), tg.tensor([3.0, 4.0])
    (gx, gz), aux = tg.grad(f, argnums=(0, 2), has_aux=True)(x, y, 5.0)
    close(gx, [3.0, 4.0])
    close(gz, 1.0)
    close(aux["aux"], [2.0, 4.0])
    (value, aux2), gy = tg.value_and_grad(f, argnums=1, has_aux=True)(x, y, 5.0)
    close(value, 16.0)
    close(gy, [1.0, 2.0])


def test_grad_on_pytrees():
    params = {"w": tg.tensor([1.0, 2.0]), "b": (tg.tensor(3.0), [tg.tensor([4.0])])}

    def loss(p):
        return (p["w"] ** 2).sum() + p["b"][0] * p["b"][1][0].sum()

    g = tg.grad(loss)(params)
    assert set(g) == {"w", "b"} and isinstance(g["b"], tuple) and isinstance(g["b"][1], list)
    close(g["w"], [2.0, 4.0])
    close(g["b"][0], 4.0)
    close(g["b"][1][0], [3.0])


def test_unused_input_gets_zero_gradient():
    g = tg.grad(lambda x, y: (x * 2).sum(), argnums=1)(tg.ones(2), tg.ones(3))
    close(g, [0.0, 0.0, 0.0])


def test_grad_of_grad_and_third_order():
    f = lambda x: x**4  # noqa: E731
    close(tg.grad(tg.grad(f))(2.0), 48.0)
    close(tg.grad(tg.grad(tg.grad(f)))(2.0), 48.0)


def test_grad_of_closure_over_outer_variable():
    # d/dx [ d/dy (x*y^2) at y=3 ] = d/dx [ 2xy ] = 2y = 6
    def outer(x):
        return tg.grad(lambda y: x * y**2)(3.0)

    close(tg.grad(outer)(2.0), 6.0)


def test_grad_of_input_that_requires_grad_stays_differentiable():
    x = tg.tensor(2.0, requires_grad=True)
    g = tg.grad(lambda t: t**3)(x)
    assert g.requires_grad
    g.backward()
    close(x.grad, 12.0)


def test_grad_works_under_no_grad():
    with tg.no_grad():
        close(tg.grad(lambda x: x**2)(3.0), 6.0)


def test_vjp_and_multiple_calls():
    out, vjp_fn = tg.vjp(lambda x, y: x * y, tg.tensor([1.0, 2.0]), tg.tensor([3.0, 4.0]))
    close(out, [3.0, 8.0])
    gx, gy = vjp_fn(tg.tensor([1.0, 1.0]))
    close(gx, [3.0, 4.0])
    close(gy, [1.0, 2.0])
    gx2, _ = vjp_fn(tg.tensor([2.0, 0.0]))
    close(gx2, [6.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        vjp_fn(tg.ones(3))


def test_jvp_closed_form_and_against_jacobian():
    def f(x, y):
        return tg.stack([x.sin().sum() * y, (x * x).prod()])

    x = tg.tensor([0.3, -1.2, 0.7], dtype=tg.float64)
    y = tg.tensor(1.5, dtype=tg.float64)
    tx = tg.tensor([1.0, 2.0, -1.0], dtype=tg.float64)
    ty = tg.tensor(0.5, dtype=tg.float64)
    out, tout = tg.jvp(f, (x, y), (tx, ty))
    jx, jy = tg.jacobian(f, argnums=(0, 1))(x, y)
    expected = jx.numpy() @ tx.numpy() + jy.numpy() * ty.numpy()
    close(tout, expected, 1e-10)
    close(out, f(x, y).numpy(), 1e-12)


def test_jacobian_shapes_and_values():
    A = tg.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]], dtype=tg.float64)
    j = tg.jacobian(lambda x: A @ x)(tg.ones(3, dtype=tg.float64))
    close(j, A.numpy())
    j2 = tg.jacobian(lambda x: x.reshape(2, 2) * 2)(tg.ones(4))
    assert j2.shape == (2, 2, 4)
    jt = tg.jacobian(lambda x: {"a": x * 2, "b": x.sum()})(tg.ones(2))
    assert jt["a"].shape == (2, 2) and jt["b"].shape == (2,)


def test_hessian_closed_form():
    # f = x0^2 x1 + sin(x1) -> H = [[2 x1, 2 x0], [2 x0, -sin(x1)]]
    def f(x):
        return x[0] ** 2 * x[1] + x[1].sin()

    x = tg.tensor([1.5, 0.5], dtype=tg.float64)
    h = tg.hessian(f)(x)
    close(h, [[1.0, 3.0], [3.0, -np.sin(0.5)]], 1e-12)


def test_hessian_of_quadratic_form():
    a = np.random.default_rng(0).standard_normal((3, 3))
    A = tg.tensor(a)
    h = tg.hessian(lambda x: x @ (A @ x))(tg.ones(3, dtype=tg.float64).double())
    close(h, a + a.T, 1e-5)


def test_transform_results_match_finite_differences():
    def f(x):
        return (x.tanh() * x.exp()).sum()

    x = tg.tensor([0.1, -0.4, 0.9], dtype=tg.float64)
    g = tg.grad(f)(x).numpy()
    eps = 1e-6
    fd = [
        (f(x + eps * tg.tensor(np.eye(3)[i])).item() - f(x - eps * tg.tensor(np.eye(3)[i])).item())
        / (2 * eps)
        for i in range(3)
    ]
    close(g, fd, 1e-8)


def test_pytree_roundtrip():
    tree = {"b": (1, [2, None]), "a": 3}
    leaves, td = flatten(tree)
    assert leaves == [3, 1, 2]
    assert unflatten(td, leaves) == tree
    assert tree_map(lambda v: v * 10, tree) == {"b": (10, [20, None]), "a": 30}


def test_gradcheck_detects_a_wrong_rule():
    bad = tg.ops.OpDef(
        name="bad_sin",
        forward=np.sin,
        abstract=lambda x: tg.ops.Aval(x.shape, x.dtype),
        vjp=(lambda g, out, x: g * x.sin(),),  # should be cos
        saves=(0,),
    )
    x = tg.tensor([0.3, 0.8], dtype=tg.float64, requires_grad=True)
    with pytest.raises(tg.GradcheckError, match=r"input 0 .*index \(0,\).*analytic"):
        tg.gradcheck(lambda x: bad(x), (x,))
    assert tg.gradcheck(lambda x: bad(x), (x,), raise_exception=False) is False
    assert tg.gradcheck(lambda x: x.sin(), (x,))


def test_gradgradcheck_detects_a_wrong_second_derivative():
    # first derivative right, but written with an op whose own VJP is wrong
    cos_bad = tg.ops.OpDef(
        name="cos_bad",
        forward=np.cos,
        abstract=lambda x: tg.ops.Aval(x.shape, x.dtype),
        vjp=(lambda g, out, x: g * x.sin(),),  # should be -sin
        saves=(0,),
    )
    sin2 = tg.ops.OpDef(
        name="sin2",
        forward=np.sin,
        abstract=lambda x: tg.ops.Aval(x.shape, x.dtype),
        vjp=(lambda g, out, x: g * cos_bad(x),),
        saves=(0,),
    )
    x = tg.tensor([0.3, 0.8], dtype=tg.float64, requires_grad=True)
    assert tg.gradcheck(lambda x: sin2(x), (x,))
    with pytest.raises(tg.GradcheckError):
        tg.gradgradcheck(lambda x: sin2(x), (x,))
