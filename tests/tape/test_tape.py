"""The IR's tools: printer (expected strings), type checker (accepts traced tapes, rejects
malformed ones), and the passes (shrink what they should, never change results)."""

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import ops
from tracegrad.ops.core import Aval
from tracegrad.tape import TapeTypeError, check, interpret, passes
from tracegrad.tape.ir import Eqn, Tape, Var
from tracegrad.tape.passes import cse, dce, optimize, simplify


def seeds_f(x):
    return ((2 * x + 1) ** 2).mean()


X = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_printer_forward_of_seeds_section_3():
    tape = tg.make_tape(seeds_f)(X)
    assert str(tape) == (
        "{ lambda a:f32[2,3] ; let\n"
        "    b:f32[2,3] = mul a 2\n"
        "    c:f32[2,3] = add b 1\n"
        "    d:f32[2,3] = pow c 2\n"
        "    e:f32[] = mean[dims=(0, 1), keepdim=False] d\n"
        "  in (e) }"
    )


def test_printer_short_tape_on_one_line():
    tape = tg.make_tape(lambda x: 2 * x + 1)(tg.ones(3))
    assert str(tape) == "{ lambda a:f32[3] ; let b:f32[3] = mul a 2; c:f32[3] = add b 1 in (c) }"


def test_printer_value_and_grad_forward_and_adjoint():
    tape = tg.make_tape(tg.value_and_grad(seeds_f))(X)
    assert str(tape) == (
        "{ lambda a:f32[2,3] ; let\n"
        "    b:f32[2,3] = mul a 2\n"
        "    c:f32[2,3] = add b 1\n"
        "    d:f32[2,3] = pow c 2\n"
        "    e:f32[] = mean[dims=(0, 1), keepdim=False] d\n"
        "    f:f32[] = const[value=1.]\n"
        "    g:f32[] = div f 6.0\n"
        "    h:f32[2,3] = expand[shape=(2, 3)] g\n"
        "    i:f32[2,3] = mul c 2\n"
        "    j:f32[2,3] = mul h i\n"
        "    k:f32[2,3] = mul j 2\n"
        "  in (e, k) }"
    )
    check(tape)


def test_printer_shows_captured_state_and_writes():
    w = tg.tensor([1.0, 2.0])

    def step(x):
        with tg.no_grad():
            w.mul_(0.5)
        return (x * w).sum()

    tape = tg.make_tape(step)(tg.ones(2))
    text = str(tape)
    assert text.startswith("{ lambda a:f32[2] ; b:f32[2] let")
    assert text.endswith("in (e) [b <- c] }")
    assert w.tolist() == [1.0, 2.0]  # tracing changed nothing


def test_printer_formats_index_params():
    tape = tg.make_tape(lambda x: x[1:, ::2, 0, None])(tg.ones(3, 4, 2))
    assert "getitem[idx=[1:, ::2, 0, None]]" in str(tape)


def test_checker_accepts_traced_tapes():
    for f in [seeds_f, tg.value_and_grad(seeds_f), tg.grad(lambda x: x.softmax(1).max())]:
        check(tg.make_tape(f)(X))


def _tiny_tape():
    tape = Tape()
    a = tape.new_var(Aval((3,), np.float32))
    tape.args.append(a)
    b = tape.add_eqn(ops.mul, (a, 2.0), Aval((3,), np.float32), {})
    tape.outputs = [b]
    return tape, a, b


def test_checker_rejects_malformed_tapes():
    tape, a, b = _tiny_tape()
    check(tape)
    undefined = Var(Aval((3,), np.float32))
    tape.eqns.append(Eqn(ops.add, (undefined, 1.0), Var(Aval((3,), np.float32)), {}))
    with pytest.raises(TapeTypeError, match="before it is defined"):
        check(tape)
    tape, a, b = _tiny_tape()
    tape.eqns.append(
        Eqn(ops.sum, (b,), Var(Aval((3,), np.float32)), {"dims": (0,), "keepdim": False})
    )
    with pytest.raises(TapeTypeError, match="shape rule gives"):
        check(tape)
    tape, a, b = _tiny_tape()
    tape.eqns.append(Eqn(ops.add, (b, "1"), Var(Aval((3,), np.float32)), {}))
    with pytest.raises(TapeTypeError, match="literal"):
        check(tape)
    tape, a, b = _tiny_tape()
    tape.eqns.append(tape.eqns[0])
    with pytest.raises(TapeTypeError, match="redefines"):
        check(tape)


def _run(tape, args):
    return interpret(tape, [np.asarray(a) for a in args], [])[0]


def test_dce_drops_dead_equations():
    def f(x):
        unused = x.exp() * 3  # noqa: F841
        return x + 1

    tape = tg.make_tape(f)(tg.ones(3))
    assert len(tape.eqns) == 3
    smaller = dce(tape)
    assert [e.op.name for e in smaller.eqns] == ["add"]
    np.testing.assert_array_equal(_run(smaller, [np.ones(3, np.float32)])[0], 2.0)


def test_cse_merges_equal_equations():
    tape = tg.make_tape(lambda x: x.sin() * 2 + x.sin() * 2)(tg.ones(3))
    assert len(tape.eqns) == 5
    merged = dce(cse(tape))
    assert [e.op.name for e in merged.eqns] == ["sin", "mul", "add"]
    x = np.linspace(0, 1, 3, dtype=np.float32)
    np.testing.assert_allclose(_run(merged, [x])[0], _run(tape, [x])[0])


def test_simplify_removes_trivial_adjoint_equations():
    def f(x, y):
        a = (x * 1 + 0) / 1 - 0
        b = a.reshape(2, 3).permute(0, 1)
        s = y.expand(4, 2, 3).sum(0)  # broadcast then summed back: y * 4
        return b + s

    x, y = tg.randn(2, 3), tg.randn(2, 3)
    tape = tg.make_tape(f)(x, y)
    simple = simplify(tape)
    names = [e.op.name for e in simple.eqns]
    assert names == ["mul", "add"], names
    np.testing.assert_allclose(_run(simple, [x, y])[0], _run(tape, [x, y])[0], rtol=1e-6)


def test_simplify_folds_the_seed_of_backward():
    tape = optimize(tg.make_tape(tg.grad(lambda x: (x * x).sum()))(tg.ones(3)))
    assert "const" not in [e.op.name for e in tape.eqns]
    np.testing.assert_allclose(_run(tape, [np.array([1, 2, 3], np.float32)])[0], [2, 4, 6])


def test_simplify_puts_a_reshaped_reductions_dims_back_with_keepdim():
    # reshape(sum(x, 1), (3, 1)) is sum(x, 1, keepdim=True): no reshape left between the
    # reduction's loop and the loop that broadcasts it; the non-keepdim result stays where used
    x = tg.tensor(np.random.default_rng(2).random((3, 4)))

    def f(x):
        return x.sum(1).reshape(3, 1) * x + x.amax(1).reshape(3, 1) + x.mean(1).sum()

    tape = simplify(tg.make_tape(f)(x))
    assert [e.op.name for e in tape.eqns].count("reshape") == 0
    reductions = [
        (e.op.name, tuple(e.params["dims"]), e.params["keepdim"])
        for e in tape.eqns
        if e.op.name in ("sum", "amax", "mean")
    ]
    assert sorted(reductions) == [
        ("amax", (1,), True),  # was reshaped
        ("mean", (1,), False),  # used as it is
        ("sum", (0,), False),
        ("sum", (1,), True),  # was reshaped
    ]
    (value,), _ = interpret(tape, [x.numpy()], [])
    np.testing.assert_allclose(value, f(x).numpy(), rtol=1e-12)
    # a reshape to another shape is left alone
    other = simplify(tg.make_tape(lambda x: x.sum(0).reshape(2, 2))(x))
    assert [e.op.name for e in other.eqns] == ["sum", "reshape"]


@pytest.mark.parametrize("seed", range(5))
def test_passes_never_change_results(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4)).astype(np.float32)

    def f(x):
        y = (x * 1).tanh() + x.tanh()
        z = y.softmax(1) * (y - 0)
        return z.sum(), x.unsqueeze(0).expand(5, 3, 4).sum(0)

    tape = tg.make_tape(tg.value_and_grad(lambda x: f(x)[0]))(tg.tensor(x))
    for p in (dce, cse, simplify, optimize):
        out = p(tape)
        check(out)
        for a, b in zip(_run(out, [x]), _run(tape, [x])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    tape2 = tg.make_tape(f)(tg.tensor(x))
    for a, b in zip(_run(optimize(tape2), [x]), _run(tape2, [x])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _conv_grads(groups: int, stride: int):
    def f(x, w, w2):
        y = tg.nn.functional.conv2d(x, w, padding=1, stride=stride, groups=groups).relu()
        return tg.nn.functional.conv2d(y, w2, dilation=2).square().sum()

    return tg.value_and_grad(f, argnums=(0, 1, 2))


@pytest.mark.parametrize("groups, stride", [(1, 1), (2, 2)])
def test_convolutions_share_their_columns_with_the_weight_gradient(groups, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    w, w2 = rng.standard_normal((6, 4 // groups, 3, 3)), rng.standard_normal((3, 6, 2, 2))
    tape = tg.make_tape(_conv_grads(groups, stride))(*map(tg.tensor, (x, w, w2)))
    names = [e.op.name for e in tape.eqns]
    assert names.count("conv2d") == 2 and names.count("unfold2d") == 2  # forward, weight grads
    out = optimize(tape)
    check(out)
    names = [e.op.name for e in out.eqns]
    # each convolution is its im2col and a product; the weight gradient reads those columns
    assert names.count("conv2d") == 0 and names.count("unfold2d") == 2
    for a, b in zip(_run(out, [x, w, w2]), _run(tape, [x, w, w2])):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_convolutions_keep_conv2d_without_a_weight_gradient_or_over_the_memory_cap(monkeypatch):
    x, w = tg.randn(2, 3, 8, 8), tg.randn(4, 3, 3, 3)
    forward = optimize(tg.make_tape(lambda x, w: tg.nn.functional.conv2d(x, w))(x, w))
    assert [e.op.name for e in forward.eqns] == ["conv2d"]
    # columns of 3 * 9 * 2 * 36 float32 = 7776 bytes: over a cap of 7775 the forward keeps its
    # conv2d and the weight gradient unfolds again; at 7776 the two share one im2col
    value_and_grad = tg.value_and_grad(lambda x, w: tg.nn.functional.conv2d(x, w).sum(), argnums=1)
    for cap, convs in ((7775, 1), (7776, 0)):
        monkeypatch.setattr(passes, "COLUMNS_KEPT_BYTES", cap)
        names = [e.op.name for e in optimize(tg.make_tape(value_and_grad)(x, w)).eqns]
        assert names.count("conv2d") == convs and names.count("unfold2d") == 1


def test_simplify_composes_permutes():
    x = tg.randn(2, 3, 4)
    assert [e.op.name for e in simplify(tg.make_tape(lambda x: x.mT.mT * 2)(x)).eqns] == ["mul"]
    tape = simplify(tg.make_tape(lambda x: x.permute(1, 0, 2).permute(0, 2, 1) * 2)(x))
    assert [(e.op.name, e.params.get("dims")) for e in tape.eqns] == [
        ("permute", (1, 2, 0)),
        ("mul", None),
    ]
    np.testing.assert_array_equal(_run(tape, [x.numpy()])[0], x.numpy().transpose(1, 2, 0) * 2)


def test_the_weight_gradient_of_a_linear_layer_comes_out_in_the_weights_layout():
    # d/dW of x @ W^T is (x^T @ g)^T; as g^T @ x the product has W's layout, no transpose after
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    f = tg.grad(lambda x, w, b: tg.nn.functional.linear(x, w, b).tanh().sum(), argnums=(1, 2))
    tape = tg.make_tape(f)(*map(tg.tensor, (x, w, b)))
    out = optimize(tape)
    check(out)
    (mm,) = [e for e in out.eqns if e.op.name == "matmul" and e.out.shape == (3, 4)]
    assert not [e for e in out.eqns if e.op.name == "permute" and e.inputs[0] is mm.out]
    for a, b_ in zip(_run(out, [x, w, b]), _run(tape, [x, w, b])):
        np.testing.assert_allclose(a, b_, rtol=1e-12)
