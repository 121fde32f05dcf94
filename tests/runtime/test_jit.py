"""tg.jit end to end (through the interpreter): results equal eager, the cache and its key,
captured state and its write-back, composition with the transforms, and every TracerError."""

import threading

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.tape import WriteKind

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def seeds_f(x):
    return ((2 * x + 1) ** 2).mean()


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(
        np.asarray(a.detach().numpy() if isinstance(a, tg.Tensor) else a),
        np.asarray(b.detach().numpy() if isinstance(b, tg.Tensor) else b),
        rtol=tol,
        atol=tol,
    )


# --------------------------------------------------------------------------------------------
# results and the cache


def test_jit_equals_eager_and_caches():
    f = tg.jit(seeds_f)
    x = tg.tensor(X)
    assert str(f(x)) == "tensor(75.6667)"
    close(f(x * 2), seeds_f(x * 2))
    assert f.stats["traces"] == 1 and f.stats["compiles"] == 1 and f.stats["memory_hits"] == 1
    f(tg.ones(5, 3))  # a new shape is a new signature
    assert f.stats["traces"] == 2


def test_jit_of_value_and_grad_equals_backward():
    x = tg.tensor(X, requires_grad=True)
    seeds_f(x).backward()
    value, g = tg.jit(tg.value_and_grad(seeds_f))(tg.tensor(X))
    assert str(value) == "tensor(75.6667)"
    assert str(g) == str(x.grad)


def test_grad_of_jit_equals_grad():
    g1 = tg.grad(tg.jit(seeds_f))(tg.tensor(X))
    g2 = tg.grad(seeds_f)(tg.tensor(X))
    close(g1, g2)
    h = tg.grad(tg.grad(tg.jit(lambda x: x**3)))(2.0)
    close(h, 12.0)


def test_pytrees_numbers_and_numpy_arrays():
    @tg.jit
    def f(params, x, scale):
        return {"y": (params["w"] * x).sum() * scale, "z": (params["b"][0] + x,)}

    params = {"w": tg.tensor([1.0, 2.0]), "b": [tg.tensor(3.0)]}
    out = f(params, np.array([1.0, 1.0], dtype=np.float32), 2.0)
    close(out["y"], 6.0)
    close(out["z"][0], [4.0, 4.0])
    f(params, np.array([1.0, 1.0], dtype=np.float32), 3.0)  # a new number is a new literal
    assert f.stats["traces"] == 2


def test_static_argnums_and_argnames():
    @tg.jit
    def plain(x, n):
        return x * n

    def f(x, n, mode="sum"):
        y = x
        for _ in range(n):  # Python control flow on a static value
            y = y * 2
        return y.sum() if mode == "sum" else y.mean()

    jf = tg.jit(f, static_argnums=(1,), static_argnames=("mode",))
    close(jf(tg.ones(4), 3), 32.0)
    close(jf(tg.ones(4), 3, mode="mean"), 8.0)
    close(jf(tg.ones(4), 2), 16.0)
    assert jf.stats["traces"] == 3
    close(plain(tg.ones(2), 3), [3.0, 3.0])
    with pytest.raises(TypeError, match="argument 1 .*not hashable"):
        jf(tg.ones(4), [3])


def test_tape_and_source_of_a_jitted_function():
    f = tg.jit(tg.value_and_grad(seeds_f))
    tape = f.tape(tg.tensor(X))
    assert str(tape).count("\n") >= 5 and "mean" in str(tape)
    assert "mean" in f.source(tg.tensor(X))
    assert f.stats["traces"] == 1  # tape() and source() share the entry


def test_outputs_do_not_alias_inputs():
    f = tg.jit(lambda x: x.reshape(-1))
    x = tg.ones(2, 2)
    y = f(x)
    y += 1
    assert x.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_two_threads_get_correct_results_and_trace_once():
    f = tg.jit(seeds_f)
    results = {}

    def work(i):
        results[i] = f(tg.full((2, 3), float(i))).item()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert results[i] == pytest.approx((2 * i + 1) ** 2)
    assert f.stats["traces"] == 1


def test_explain_cache_misses(monkeypatch, capsys):
    monkeypatch.setenv("TRACEGRAD_EXPLAIN_CACHE_MISSES", "1")
    f = tg.jit(seeds_f)
    f(tg.ones(2, 3))
    f(tg.ones(4, 3))
    err = capsys.readouterr().err
    assert "cache miss" in err and "(2, 3)" in err and "(4, 3)" in err


def test_unknown_device_is_refused_clearly():
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        tg.jit(seeds_f, device="tpu")


# --------------------------------------------------------------------------------------------
# captured state


def _sgd_momentum_step(w, buf, x, y, lr=0.1, momentum=0.9):
    loss = ((x @ w - y) ** 2).mean()
    loss.backward()
    with tg.no_grad():
        buf.mul_(momentum).add_(w.grad)
        w.sub_(lr * buf)
    w.grad = None
    return loss


def test_sgd_with_momentum_on_a_closure_weight_equals_eager():
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((8, 3)))
    y = tg.tensor(rng.standard_normal(8))
    w0 = rng.standard_normal(3)

    w_e = tg.tensor(w0, requires_grad=True)
    buf_e = tg.zeros(3, dtype=tg.float64)
    eager = [_sgd_momentum_step(w_e, buf_e, x, y).item() for _ in range(10)]

    w = tg.tensor(w0, requires_grad=True)
    buf = tg.zeros(3, dtype=tg.float64)
    w_data = w.numpy(force=True)
    step = tg.jit(lambda x, y: _sgd_momentum_step(w, buf, x, y))
    jitted = [step(x, y).item() for _ in range(10)]

    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    close(w, w_e, 1e-12)
    close(buf, buf_e, 1e-12)
    assert w.grad is None
    assert w.numpy(force=True) is w_data  # updated in place: same storage
    assert step.stats["traces"] == 1 and step.stats["memory_hits"] == 9


def test_grad_accumulates_across_jitted_calls_as_eagerly():
    w_e = tg.tensor([1.0, 2.0], requires_grad=True)
    w = tg.tensor([1.0, 2.0], requires_grad=True)

    def run(w, x):
        loss = (x * w).sum() ** 2
        loss.backward()
        return loss

    step = tg.jit(lambda x: run(w, x))
    for i in range(4):
        x = tg.tensor([1.0, float(i)])
        run(w_e, x)
        step(x)
        close(w.grad, w_e.grad)
    # first call: .grad None -> created; second: accumulated into the existing .grad (retrace)
    assert step.stats["traces"] == 2
    g = w.grad
    step(tg.tensor([1.0, 1.0]))
    assert w.grad is g  # accumulated in place, as eager does


def test_tracing_leaves_captured_state_untouched():
    w = tg.tensor([1.0, 2.0], requires_grad=True)

    def step(x):
        (x * w).sum().backward()
        with tg.no_grad():
            w.sub_(w.grad)
        return w.sum()

    tg.make_tape(step)(tg.ones(2))
    assert w.tolist() == [1.0, 2.0] and w.grad is None and w.grad_fn is None


def test_captured_tensor_changing_shape_retraces():
    w = tg.ones(3)
    f = tg.jit(lambda x: x * w)
    close(f(tg.ones(3)), [1.0, 1.0, 1.0])
    with tg.no_grad():
        w.copy_(tg.full((3,), 2.0))
    close(f(tg.ones(3)), [2.0, 2.0, 2.0])  # new value: same trace
    assert f.stats["traces"] == 1
    w.data = tg.ones(4).numpy()
    close(f(tg.ones(4)), [1.0] * 4)  # new shape: retrace
    assert f.stats["traces"] == 2


def test_outputs_that_need_the_callers_backward_are_compiled_with_a_backward():
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    f = tg.jit(lambda x: (x * w).sum())
    loss = f(tg.ones(2))
    assert loss.grad_fn.name() == "CompiledFunctionBackward"
    loss.backward()
    close(w.grad, [1.0, 1.0])
    assert f.stats["eager_calls"] == 0
    with tg.no_grad():
        assert f(tg.ones(2)).grad_fn is None


# --------------------------------------------------------------------------------------------
# TracerError


@pytest.mark.parametrize(
    "body, what",
    [
        (lambda x: bool(x.sum() > 0), "bool"),
        (lambda x: float(x.sum()), "float"),
        (lambda x: int(x.sum()), "int"),
        (lambda x: x.sum().item(), "item"),
        (lambda x: x.numpy(), "numpy"),
        (lambda x: np.asarray(x), "numpy"),
        (lambda x: x.tolist(), "tolist"),
        (lambda x: [1, 2, 3][x.sum().long()], "index"),
    ],
)
def test_value_dependent_code_raises_tracer_error(body, what):
    f = tg.jit(lambda x: body(x))
    with pytest.raises(tg.TracerError) as info:
        f(tg.ones(3))
    message = str(info.value)
    assert "test_jit.py" in message  # the user's file and line
    assert "tg.where" in message and "static_argnums" in message


def test_python_if_on_a_traced_value():
    @tg.jit
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(tg.TracerError, match=r"test_jit.py:\d+: bool\(\)"):
        f(tg.ones(2))
    # the fix the message suggests
    g = tg.jit(lambda x: tg.where(x.sum() > 0, x, -x))
    close(g(tg.ones(2)), [1.0, 1.0])


def test_escaped_tracer_is_refused_when_used():
    leaked = []

    @tg.jit
    def f(x):
        y = x * 2
        leaked.append(y)
        return y

    f(tg.ones(2))
    with pytest.raises(tg.TracerError, match="escaped|after that function's trace ended"):
        leaked[0] + 1
    with pytest.raises(tg.TracerError):
        leaked[0].numpy()
    assert "traced" in repr(leaked[0])


def test_traced_repr_and_shape_logic_work():
    seen = []

    @tg.jit
    def f(x):
        seen.append(repr(x * 2))
        return x.reshape(x.shape[0] * x.shape[1])  # shapes are concrete while tracing

    close(f(tg.ones(2, 3)), [1.0] * 6)
    assert seen == ["tensor(<traced f32[2,3]>)"]


def test_random_numbers_inside_jit_are_fresh_at_every_call_and_equal_eager():
    def f(x):
        return (
            x + tg.rand(3),
            tg.randn(2, 2),
            tg.randint(0, 100, (4,)),
            tg.rand(2, 3, dtype=tg.float64),
        )

    jf = tg.jit(f)
    tg.manual_seed(5)
    eager = [f(tg.ones(3)) for _ in range(3)]
    tg.manual_seed(5)
    jitted = [jf(tg.ones(3)) for _ in range(3)]
    for a, b in zip(eager, jitted):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())  # the same uniform bits
        np.testing.assert_allclose(a[1].numpy(), b[1].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(a[2].numpy(), b[2].numpy())
        np.testing.assert_array_equal(a[3].numpy(), b[3].numpy())
    assert not np.array_equal(jitted[0][0].numpy(), jitted[1][0].numpy())  # fresh every call
    # drawn by compiled code (ops/kernels.py), not a numpy step: the same bits as eager above
    source = jf.source(tg.ones(3))
    assert "uniform_f32(" in source and "uniform_f64(" in source and "Python (numpy" not in source
    assert jf.stats["traces"] == 1
    with pytest.raises(tg.TracerError, match="randperm"):
        tg.jit(lambda x: x + tg.randperm(3))(tg.ones(3))  # still numpy's: refused


def test_nested_jit_is_traced_through():
    inner = tg.jit(lambda x: x.sin() * 2)
    outer = tg.jit(lambda x: inner(x).sum() + inner(x * 2).sum())
    x = tg.tensor([0.1, 0.2])
    close(outer(x), (x.sin() * 2).sum() + ((x * 2).sin() * 2).sum())
    assert inner.stats["traces"] == 0  # it ran inside the outer trace
    assert [e.op.name for e in outer.tape(x).eqns].count("sin") == 2


def test_an_exception_while_tracing_restores_captured_state():
    w = tg.tensor([1.0, 2.0], requires_grad=True)

    @tg.jit
    def f(x):
        (x * w).sum().backward()
        with tg.no_grad():
            w.sub_(1.0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        f(tg.ones(2))
    assert w.tolist() == [1.0, 2.0] and w.grad is None
    (w * 2).sum().backward()  # and it is usable eagerly again
    close(w.grad, [2.0, 2.0])


def test_debug_prints_the_tape(monkeypatch, capsys):
    monkeypatch.setenv("TRACEGRAD_DEBUG", "1")
    tg.jit(seeds_f)(tg.ones(2, 3))
    assert "mean[dims=(0, 1), keepdim=False]" in capsys.readouterr().err


def test_debug_levels_print_kernels_and_source(monkeypatch, capsys):
    monkeypatch.setenv("TRACEGRAD_DEBUG", "3")
    tg.jit(seeds_f, parallel=False)(tg.ones(3, 2))
    err = capsys.readouterr().err
    assert "kernel 0: loop over (3, 2)" in err  # level 2: the kernels
    assert "@njit(" in err and "def segment(" in err  # level 3: the generated source


def _donations(f, *args):
    entry = f._entry_for(args, {})
    return entry.executable.program.donations


def test_state_updates_are_computed_into_the_captured_arrays():
    # SGD with momentum on a conv-shaped weight: the new values are written straight into the
    # parameter's and the buffer's arrays (no temporaries, no copy back), and equal eager ones
    rng = np.random.default_rng(0)
    start = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    grads = [tg.tensor(rng.standard_normal(start.shape).astype(np.float32)) for _ in range(3)]
    p, buf = tg.tensor(start.copy()), tg.zeros(16, 8, 3, 3)
    p_eager, buf_eager = tg.tensor(start.copy()), tg.zeros(16, 8, 3, 3)
    arrays = (p._data, buf._data)

    def update(p, buf, g):
        with tg.no_grad():
            buf.mul_(0.9).add_(g)
            p.sub_(0.1 * buf)
        return (p * p).sum()

    step = tg.jit(lambda g: update(p, buf, g))
    for g in grads:
        np.testing.assert_allclose(step(g).item(), update(p_eager, buf_eager, g).item(), rtol=1e-5)
    np.testing.assert_allclose(p.numpy(), p_eager.numpy(), rtol=1e-5, atol=1e-6)
    assert p._data is arrays[0] and buf._data is arrays[1]
    assert len(_donations(step, grads[0])) == 2


def test_an_update_loop_reads_the_old_value_through_the_buffer_it_may_overwrite():
    # the donated buffer is read and written as one array (so LLVM vectorizes the loop); when
    # the caller cannot donate (the parameter is a view of a bigger array), the buffer is a
    # new array and the old values are copied into it first: results equal eager either way
    rng = np.random.default_rng(2)
    start = rng.standard_normal((6, 5)).astype(np.float32)
    g = tg.tensor(rng.standard_normal((6, 5)).astype(np.float32))
    base = np.zeros((7, 5), np.float32)
    base[1:] = start
    for p in (tg.tensor(start.copy()), tg.from_numpy(base[1:])):
        p_eager, buf, buf_eager = tg.tensor(start.copy()), tg.zeros(6, 5), tg.zeros(6, 5)

        def update(p, buf, g):
            with tg.no_grad():
                buf.mul_(0.9).add_(g)
                p.sub_(0.1 * buf)
            return p.sum()

        step = tg.jit(lambda g, p=p, buf=buf: update(p, buf, g))
        for _ in range(3):
            close(step(g), update(p_eager, buf_eager, g), 1e-5)
        close(p, p_eager, 1e-6)
        close(buf, buf_eager, 1e-6)
        source = step.source(g)
        assert "the loop reads" in source and ".ctypes.data !=" in source
    np.testing.assert_array_equal(base[0], 0)  # the view's neighbours are untouched
    np.testing.assert_allclose(base[1:], p_eager.numpy(), rtol=1e-6)


def test_what_reads_a_parameter_runs_before_its_update_so_the_update_is_in_place():
    # rule 9: a layer's input gradient reads its weight; rule 7 would place the weight's SGD
    # update (made when its gradient is ready) before it, and the update then needed a buffer
    # of its own. Every parameter and momentum buffer is updated in its own array.
    tg.manual_seed(0)
    model = tg.nn.Sequential(
        tg.nn.Linear(6, 8), tg.nn.ReLU(), tg.nn.Linear(8, 8), tg.nn.ReLU(), tg.nn.Linear(8, 3)
    )
    eager = tg.nn.Sequential(
        tg.nn.Linear(6, 8), tg.nn.ReLU(), tg.nn.Linear(8, 8), tg.nn.ReLU(), tg.nn.Linear(8, 3)
    )
    eager.load_state_dict(model.state_dict())

    def stepper(model):
        opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = tg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    jitted, plain = tg.jit(stepper(model)), stepper(eager)
    rng = np.random.default_rng(3)
    x = tg.tensor(rng.standard_normal((5, 6)).astype(np.float32))
    y = tg.tensor(rng.integers(0, 3, 5))
    for _ in range(4):
        close(jitted(x, y), plain(x, y), 1e-5)
    for (name, a), b in zip(model.named_parameters(), eager.parameters()):
        close(a, b, 1e-5)
    entry = jitted._entry_for((x, y), {})
    writes = [w for w in entry.tape.writes if w.kind is WriteKind.DATA and w.value.ndim]
    assert len(writes) == 2 * len(list(model.parameters()))  # parameters and momentum buffers
    assert set(entry.executable.program.donations) >= {id(w.value) for w in writes}


def test_a_reader_of_the_old_value_that_needs_the_new_one_stays_after_it():
    # rule 9 cannot move `new @ p.T` (it reads the old p) before the loop making `new`: p
    # then gets its new value through a buffer of its own, and the product sees the old p
    rng = np.random.default_rng(4)
    start = rng.standard_normal((4, 4)).astype(np.float32)
    p, p_eager = tg.tensor(start.copy()), tg.tensor(start.copy())
    g = tg.tensor(rng.standard_normal((4, 4)).astype(np.float32))

    def update(p, g):
        with tg.no_grad():
            new = p - 0.1 * g
            product = new @ p.T
            p.copy_(new)
        return product

    step = tg.jit(lambda g: update(p, g))
    for _ in range(3):
        close(step(g), update(p_eager, g), 1e-5)
    close(p, p_eager, 1e-6)


def test_old_value_read_after_the_new_one_is_computed_stays_correct():
    # `new` is computed, then the old p is read, then p takes the new value: the write's
    # value is the copy (a Python step), so p's array is not written by the loop
    rng = np.random.default_rng(1)
    start = rng.standard_normal((4, 5)).astype(np.float32)
    p, p_eager = tg.tensor(start.copy()), tg.tensor(start.copy())
    g = tg.tensor(rng.standard_normal((4, 5)).astype(np.float32))

    def update(p, g):
        with tg.no_grad():
            new = p - 0.1 * g
            old_dot = (p * g).sum()  # reads the old p after `new` is computed, same loop
            p.copy_(new)
        return old_dot

    step = tg.jit(lambda g: update(p, g))
    for _ in range(3):
        np.testing.assert_allclose(step(g).item(), update(p_eager, g).item(), rtol=1e-5)
    np.testing.assert_allclose(p.numpy(), p_eager.numpy(), rtol=1e-6)
    assert _donations(step, g) == {}


def test_elementwise_loops_over_full_shapes_run_flat():
    x = tg.tensor(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    f = tg.jit(lambda x: (x * 2 + 1, (x * x).sum()))
    a, s = f(x)
    np.testing.assert_allclose(a.numpy(), x.numpy() * 2 + 1)
    np.testing.assert_allclose(s.item(), (x.numpy().astype(np.float64) ** 2).sum(), rtol=1e-6)
    assert "one flat loop over the elements" in f.source(x)


def test_numpy_steps_write_into_reused_arrays_and_never_into_one_the_caller_holds():
    # matmul and im2col results come from the executable's buffer pool: a result the caller
    # dropped is reused by the next call (no new memory), one the caller holds never is
    rng = np.random.default_rng(5)
    a1, a2 = (tg.tensor(rng.standard_normal((256, 128)).astype(np.float32)) for _ in range(2))
    b = tg.tensor(rng.standard_normal((128, 128)).astype(np.float32))
    w = tg.tensor(rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    x1, x2 = (tg.tensor(rng.standard_normal((4, 4, 32, 32)).astype(np.float32)) for _ in range(2))

    def f(a, x):
        # the weight's gradient puts the conv's im2col on the tape (tape pass share_conv_columns)
        out, vjp = tg.vjp(lambda w: tg.nn.functional.conv2d(x, w, padding=1), w)
        return a @ b, out, vjp(tg.ones_like(out))[0]

    jf = tg.jit(f)
    first = jf(a1, x1)
    kept = [t.numpy().copy() for t in first]
    second = jf(a2, x2)
    for got, want in zip(first, kept):  # held by the caller: untouched by the second call
        np.testing.assert_array_equal(got.numpy(), want)
    for got, want in zip(second, f(a2, x2)):
        close(got, want, 1e-4)
    address = second[0].numpy().__array_interface__["data"][0]
    del second
    third = jf(a1, x1)
    assert third[0].numpy().__array_interface__["data"][0] == address  # dropped: reused
    for got, want in zip(third, kept):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    steps = jf._entry_for((a1, x1), {}).executable.call.__globals__.values()
    names = {getattr(s, "__name__", "") for s in steps}
    assert {"step_matmul_into", "step_unfold2d_into"} <= names


def test_contiguous_inside_jit():
    # regression: .contiguous() raised AttributeError: 'Var' object has no attribute 'flags'
    x = tg.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)

    def f(x):
        y = x.transpose(1, 2).contiguous().reshape(2, 12)
        return (y * tg.arange(12.0)).sum()

    jf = tg.jit(tg.value_and_grad(f))
    value, grad = jf(x)
    want_value, want_grad = tg.value_and_grad(f)(x)
    np.testing.assert_allclose(value.item(), want_value.item())
    np.testing.assert_allclose(grad.numpy(), want_grad.numpy())


def test_in_place_through_a_contiguous_alias_is_refused_under_jit():
    @tg.jit
    def f(x):
        y = x.contiguous()  # eagerly x itself: a change of y would change x
        y.add_(1)
        return x

    with pytest.raises(tg.TracerError, match="contiguous"):
        f(tg.ones(3))


def test_boolean_mask_fill_inside_jit():
    # x[mask] = value is where(mask, value, x) under tracing: the shape does not depend on data
    def f(x):
        y = x.clone()
        y[y < 0] = 0.0
        z = x.clone()
        z[x[:, 0] > 0] = tg.tensor(5.0)  # a mask over the leading dim, a 0-d value
        return y, z

    x = tg.tensor(np.random.default_rng(0).standard_normal((4, 3)))
    for got, want in zip(tg.jit(f)(x), f(x)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())

    def g(x):
        x = x.clone()
        x[x > 0] = tg.tensor([1.0, 2.0])  # values per selected element: data-dependent
        return x

    with pytest.raises(ValueError, match="boolean mask"):
        tg.jit(g)(tg.ones(2))


def test_source_reads_in_the_tapes_names_and_values():
    # f.source() is for people: the segment is shown with the tape's names, and each statement
    # is commented with its tape equation exactly as the tape prints it (sizes, literal values)
    f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()))
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    f(x)
    tape_lines = [
        line.strip()
        for line in str(f.tape(x)).splitlines()
        if " = " in line and "const" not in line
    ]
    src = f.source(x)
    assert len(tape_lines) >= 8
    for line in tape_lines:
        assert f"# {line}" in src, line
    assert "LI0 = np.float32(LI[0])  # 2" in src  # literal slots show their values


def test_a_zero_dim_integer_tensor_indexes_inside_jit():
    # PyTorch code indexes with 0-d tensors (`emb[token]`, `x[:, t]`): eagerly an integer, under
    # tg.jit an index array (its value is data), same values and gradients, no retrace per value
    w = tg.tensor(np.arange(12.0).reshape(4, 3))

    def f(w, i, j):
        return (w[i] * 2).sum() + (w[:, j] ** 2).sum()

    g = tg.jit(tg.value_and_grad(f))
    for k, c in ((0, 2), (3, 0), (-1, -2)):
        i, j = tg.tensor(k), tg.tensor(c)
        value, grad = g(w, i, j)
        evalue, egrad = tg.value_and_grad(f)(w, i, j)
        close(value, evalue)
        close(grad, egrad)
    assert g.stats["traces"] == 1


def test_fast_path_takes_numpy_arrays_and_numbers():
    f = tg.jit(lambda x, s: (x * s).sum(0))
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    close(f(a, 2.0), [8.0, 12.0])
    close(f(a, 2.0), [8.0, 12.0])  # a hit of the fast path
    close(f(a + 1, 2.0), [12.0, 16.0])  # new values, same entry
    close(f(tg.tensor(a), 2.0), [8.0, 12.0])  # a tensor of the same shape: the same trace
    assert f.stats["traces"] == 1 and f.stats["memory_hits"] == 3
    close(f(a, 3.0), [12.0, 18.0])  # a number is a literal: its value is in the key
    close(f(a, 3), [12.0, 18.0])  # and its type
    close(f(a.astype(np.float32), 3), [12.0, 18.0])
    assert f.stats["traces"] == 4
    close(f(a, 2.0), [8.0, 12.0])
    assert f.stats["traces"] == 4
