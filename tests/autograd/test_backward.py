"""Eager autograd semantics: accumulation, retain_graph, errors, grad mode, freezing, graph
structure, non-leaf grads, higher order, in-place operations and version counters."""

import numpy as np
import pytest

import tracegrad as tg


def close(t, expected, tol=1e-6):
    np.testing.assert_allclose(
        np.asarray(t.detach().numpy(), np.float64), expected, rtol=tol, atol=tol
    )


# --------------------------------------------------------------------------------------------
# accumulation and zeroing


def test_backward_twice_accumulates():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    close(x.grad, [4.0, 8.0])


def test_grad_object_is_kept_and_updated_in_place():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    g = x.grad
    (x * 3).sum().backward()
    assert x.grad is g
    close(g, [6.0, 6.0])


def test_grad_does_not_alias_the_gradient_passed_in():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    v = tg.tensor([1.0, 1.0])
    (x + 0).backward(v)
    (x + 0).backward(v)
    close(v, [1.0, 1.0])  # accumulation went into x.grad, not into v
    close(x.grad, [2.0, 2.0])


def test_zero_grad_variants():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    x.grad.zero_()
    (x * x).sum().backward()
    close(x.grad, [2.0, 4.0])
    x.grad = None
    (x * 5).sum().backward()
    close(x.grad, [5.0, 5.0])


def test_gradient_of_shared_subexpression_sums_paths():
    x = tg.tensor(3.0, requires_grad=True)
    y = x * x
    z = y + y * x  # x^2 + x^3
    z.backward()
    close(x.grad, 2 * 3 + 3 * 9)


def test_broadcast_gradients_are_reduced_to_the_input_shape():
    w = tg.tensor([[1.0], [2.0]], requires_grad=True)  # (2, 1)
    b = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)  # (3,)
    (w * b).sum().backward()
    close(w.grad, [[6.0], [6.0]])
    close(b.grad, [3.0, 3.0, 3.0])


def test_leaf_backward_sets_ones():
    x = tg.tensor(2.0, requires_grad=True)
    x.backward()
    close(x.grad, 1.0)


def test_gradient_with_shape_one_output():
    x = tg.tensor([2.0], requires_grad=True)
    (x * x).backward()
    close(x.grad, [4.0])


# --------------------------------------------------------------------------------------------
# errors


def test_nonscalar_without_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        (x * 2).backward()


def test_no_requires_grad():
    y = tg.tensor(2.0) * 3
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        y.backward()


def test_second_backward_through_freed_graph():
    x = tg.tensor(2.0, requires_grad=True)
    y = x**2
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = tg.tensor(2.0, requires_grad=True)
    y = x**2
    y.backward(retain_graph=True)
    y.backward()
    close(x.grad, 8.0)


def test_graph_without_saved_values_can_run_twice():
    # as in PyTorch: AddBackward0 saves nothing, so nothing was freed
    x = tg.tensor(2.0, requires_grad=True)
    y = x + 1
    y.backward()
    y.backward()
    close(x.grad, 2.0)


def test_modified_saved_tensor():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    z = y * y  # saves y
    with tg.no_grad():
        y += 1
    with pytest.raises(
        RuntimeError, match="modified by an inplace operation.*version 1; expected version 0"
    ):
        z.sum().backward()


def test_modified_saved_output():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()  # exp saves its output
    y.mul_(2)  # recorded in-place op on a saved output
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_on_leaf_requiring_grad():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(
        RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"
    ):
        x += 1
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x[0] = 5.0
    with tg.no_grad():
        x += 1
    close(x, [2.0, 3.0])
    assert x.grad_fn is None and x.requires_grad


def test_shape_mismatch_of_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(tg.ones(3))


def test_requires_grad_on_integer_tensor():
    with pytest.raises(RuntimeError, match="floating point"):
        tg.tensor([1, 2], requires_grad=True)


def test_requires_grad_false_on_non_leaf():
    x = tg.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf variables"):
        (x * 2).requires_grad_(False)


def test_numpy_on_requires_grad():
    x = tg.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert x.detach().numpy() == 1.0


# --------------------------------------------------------------------------------------------
# grad mode, detach, freezing


def test_no_grad_context_and_decorator():
    x = tg.tensor(1.0, requires_grad=True)
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = x * 2
        with tg.enable_grad():
            z = x * 2
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None

    @tg.no_grad()
    def f(a):
        return a * 2

    @tg.no_grad
    def g(a):
        return a * 2

    assert f(x).grad_fn is None and g(x).grad_fn is None
    assert tg.is_grad_enabled()


def test_set_grad_enabled():
    x = tg.tensor(1.0, requires_grad=True)
    with tg.set_grad_enabled(False):
        assert (x * 2).grad_fn is None
    assert tg.is_grad_enabled()
    tg.set_grad_enabled(False)
    try:
        assert not tg.is_grad_enabled()
    finally:
        tg.set_grad_enabled(True)


def test_detach_shares_data_and_stops_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    with tg.no_grad():
        x[0] = 10.0
    close(d, [10.0, 2.0])
    y = (x * d).sum()
    y.backward()
    close(x.grad, [10.0, 2.0])


def test_freezing_a_parameter():
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([3.0, 4.0], requires_grad=True)
    w.requires_grad = False
    y = (w * b).sum()
    y.backward()
    assert w.grad is None
    close(b.grad, [1.0, 2.0])
    assert y.grad_fn.next_functions[0][0].next_functions[0] == (None, 0)


def test_frozen_inputs_cost_no_backward_work():
    # one VJP rule per input: the weight's rule is never called when it is frozen
    calls = []
    rules = tg.ops.matmul.vjp
    tg.ops.matmul.vjp = (
        lambda *a: calls.append("x") or rules[0](*a),
        lambda *a: calls.append("w") or rules[1](*a),
    )
    try:
        x = tg.randn(2, 3, requires_grad=True)
        w = tg.randn(3, 4)
        (x @ w).sum().backward()
    finally:
        tg.ops.matmul.vjp = rules
    assert calls == ["x"]


# --------------------------------------------------------------------------------------------
# graph structure


def test_grad_fn_names_and_next_functions():
    x = tg.tensor(2.0, requires_grad=True)
    y = 2 * x**2 + 1
    assert y.grad_fn.name() == "AddBackward0"
    assert type(y.grad_fn).__name__ == "AddBackward0"
    mul_node, none = y.grad_fn.next_functions
    assert none == (None, 0)
    assert mul_node[0].name() == "MulBackward0"
    pow_node = mul_node[0].next_functions[0][0]
    assert pow_node.name() == "PowBackward0"
    acc = pow_node.next_functions[0][0]
    assert acc.name() == "AccumulateGrad" and acc.variable is x
    assert x.grad_fn is None and x.is_leaf and not y.is_leaf


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda x: x - 1, "SubBackward0"),
        (lambda x: x / 2, "DivBackward0"),
        (lambda x: x.sum(), "SumBackward0"),
        (lambda x: x.mean(), "MeanBackward0"),
        (lambda x: x**x, "PowBackward1"),
        (lambda x: x.exp(), "ExpBackward0"),
        (lambda x: x.reshape(3, 1), "ViewBackward0"),
        (lambda x: x[0], "SelectBackward0"),
        (lambda x: x[1:], "SliceBackward0"),
        (lambda x: x[tg.tensor([0, 2])], "IndexBackward0"),
        (lambda x: x.relu(), "ReluBackward0"),
        (lambda x: x.clone(), "CloneBackward0"),
        (lambda x: x.unsqueeze(0).expand(2, 3), "ExpandBackward0"),
        (lambda x: x.reshape(1, 3).T, "PermuteBackward0"),
        (lambda x: tg.cat([x, x]), "CatBackward0"),
        (lambda x: x @ x, "DotBackward0"),
        (lambda x: x.double(), "ToCopyBackward0"),
    ],
)
def test_node_names_follow_pytorch(make, name):
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert make(x).grad_fn.name() == name


def test_accumulate_grad_node_is_shared_by_uses_of_a_leaf():
    x = tg.tensor(1.0, requires_grad=True)
    a, b = x * 2, x * 3
    assert a.grad_fn.next_functions[0][0] is b.grad_fn.next_functions[0][0]


# --------------------------------------------------------------------------------------------
# non-leaf grads, autograd.grad, higher order


def test_retain_grad():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    z = (y * y).sum()
    z.backward()
    close(y.grad, [6.0, 12.0])
    close(x.grad, [18.0, 36.0])
    w = x * 4
    (w * 1).sum().backward()
    assert w.grad is None  # not retained


def test_autograd_grad_does_not_touch_dot_grad():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (g,) = tg.autograd.grad((x**3).sum(), x)
    close(g, [3.0, 12.0])
    assert x.grad is None


def test_autograd_grad_wrt_intermediate():
    x = tg.tensor(2.0, requires_grad=True)
    y = x * 3
    z = y * y + y
    (gy,) = tg.autograd.grad(z, y)
    close(gy, 2 * 6 + 1)


def test_autograd_grad_unused():
    x = tg.tensor(1.0, requires_grad=True)
    u = tg.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        tg.autograd.grad(x * 2, [x, u])
    gx, gu = tg.autograd.grad(x * 2, [x, u], allow_unused=True)
    close(gx, 2.0)
    assert gu is None


def test_higher_order_with_create_graph():
    x = tg.tensor(2.0, requires_grad=True)
    y = x**4
    (g1,) = tg.autograd.grad(y, x, create_graph=True)
    (g2,) = tg.autograd.grad(g1, x, create_graph=True)
    (g3,) = tg.autograd.grad(g2, x)
    close(g1, 4 * 8)
    close(g2, 12 * 4)
    close(g3, 24 * 2)


def test_backward_create_graph_then_differentiate_grad():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    g = x.grad
    assert g.grad_fn is not None
    (h,) = tg.autograd.grad(g.sum(), x)
    close(h, [6.0, 12.0])


def test_backward_inputs_argument():
    x = tg.tensor(1.0, requires_grad=True)
    w = tg.tensor(2.0, requires_grad=True)
    (x * w).backward(inputs=[w])
    assert x.grad is None
    close(w.grad, 1.0)


def test_autograd_backward_several_roots():
    x = tg.tensor(1.0, requires_grad=True)
    tg.autograd.backward([x * 2, x * 3])
    close(x.grad, 5.0)


def test_dynamic_graph_follows_python_control_flow():
    x = tg.tensor(3.0, requires_grad=True)
    y = x
    for _ in range(4):
        y = y * x if y.item() < 50 else y + x
    y.backward()
    # x^2 = 9, x^3 = 27, x^4 = 81 (each < 50 before), then 81 >= 50: y = x^4 + x -> 4x^3 + 1
    close(x.grad, 109.0)


# --------------------------------------------------------------------------------------------
# in place and views


def test_inplace_on_non_leaf_is_recorded():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y += x  # y = 3x
    y *= x  # y = 3x^2
    assert y.grad_fn.name() == "MulBackward0"
    y.sum().backward()
    close(x.grad, [6.0, 12.0])


def test_inplace_that_overwrites_its_own_saved_input_fails_as_in_pytorch():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y *= y  # mul saved y, then y changed
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_setitem_records_gradient():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = tg.tensor(5.0, requires_grad=True)
    y = x * 1
    y[1] = v * 2
    (y * tg.tensor([1.0, 10.0, 100.0])).sum().backward()
    close(x.grad, [1.0, 0.0, 100.0])
    close(v.grad, 20.0)


def test_setitem_without_grad_writes_through_from_numpy():
    a = np.zeros(3, dtype=np.float32)
    t = tg.from_numpy(a)
    t[1] = 4.0
    t += 1
    np.testing.assert_array_equal(a, [1.0, 5.0, 1.0])
    assert t._version_count == 2


def test_views_share_storage_and_version():
    x = tg.zeros(2, 3)
    v = x[0]
    r = x.reshape(6)
    x += 1
    close(v, [1.0, 1.0, 1.0])
    assert v._version_count == x._version_count == r._version_count == 1


def test_recorded_inplace_on_a_view_is_refused():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    v = y[0:1]
    with pytest.raises(RuntimeError, match="view"):
        v *= 2


def test_stale_view_after_recorded_inplace_on_base():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    v = y[0:1]
    y *= 3
    with pytest.raises(RuntimeError, match="view whose base was changed in place"):
        (v * 2).sum()


def test_inplace_cannot_change_dtype_category():
    t = tg.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        t += 1.5
    t[0] = 7.9  # setitem casts, as PyTorch
    assert t.tolist() == [7, 2]


def test_inplace_on_expanded_view():
    t = tg.tensor([1.0]).expand(3)
    with pytest.raises(RuntimeError, match="clone"):
        t += 1


# --------------------------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (tg.tensor([1, 2]), 2.5, tg.float32),
        (tg.tensor([1.0, 2.0]), 2, tg.float32),
        (tg.tensor([1.0], dtype=tg.float64), 2.0, tg.float64),
        (tg.tensor([1, 2]), tg.tensor([1.0]), tg.float32),
        (tg.tensor([1.0]), tg.tensor(2.0, dtype=tg.float64), tg.float32),
        (tg.tensor([1.0]), tg.tensor([2.0], dtype=tg.float64), tg.float64),
        (tg.tensor([True]), 1, tg.int64),
        (tg.tensor([1], dtype=tg.int32), tg.tensor(1), tg.int32),
        (tg.tensor([1], dtype=tg.int32), tg.tensor([1]), tg.int64),
    ],
)
def test_type_promotion_follows_pytorch(a, b, expected):
    assert (a + b).dtype == expected
    assert (b + a).dtype == expected


def test_int_division_is_true_division():
    assert (tg.tensor([3]) / tg.tensor([2])).tolist() == [1.5]


def test_matmul_dtype_mismatch_is_explained():
    with pytest.raises(TypeError, match="same dtype.*float"):
        tg.ones(2, 2) @ tg.ones(2, 2, dtype=tg.float64)


def test_shape_errors_name_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: .*\(2, 3\).*\(4,\)"):
        tg.ones(2, 3) + tg.ones(4)
    with pytest.raises(ValueError, match=r"matmul: inner dims do not match"):
        tg.ones(2, 3) @ tg.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"shape '\[4, 5\]' is invalid for input of size 6"):
        tg.ones(2, 3).reshape(4, 5)
