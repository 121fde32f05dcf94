"""CUDA tensors and the CUDA jit target as a user meets them: devices, moves (differentiable),
eager ops and backward on the GPU (through the same codegen), in-place updates, modules and
optimizers, device-resident jitted calls, the size-generic compile cache, clear errors. Runs on
Numba's simulator unless NUMBA_ENABLE_CUDASIM=0 (tests/conftest.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import devices as cuda_device
from tracegrad import nn
from tracegrad.runtime import cuda_eager

pytestmark = pytest.mark.skipif(not cuda_device.available(), reason="no CUDA GPU or simulator")
RNG = np.random.default_rng(0)


def test_devices_and_moves():
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.device == "cpu" and not x.is_cuda
    xc = x.to("cuda")
    assert xc.device == "cuda" and xc.device == "cuda:0" and xc.is_cuda
    assert repr(xc.device) == "device(type='cuda', index=0)"
    assert xc.shape == (2, 2) and xc.dtype == np.float32
    assert xc.to("cuda") is xc and x.cpu() is x
    assert repr(xc) == "tensor([[1., 2.],\n        [3., 4.]], device='cuda:0')"
    np.testing.assert_array_equal(xc.cpu().numpy(), x.numpy())
    assert xc.sum().item() == 10.0 and xc.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    z = tg.zeros(3, device="cuda")
    assert z.device == "cuda" and z.cpu().tolist() == [0.0, 0.0, 0.0]
    assert x.to("cuda", tg.float64).dtype == np.float64
    s = tg.tensor(2.0, device="cuda")
    assert s.shape == () and (s * 3).shape == () and (s * 3).item() == 6.0


def test_moves_are_differentiable_and_gradients_come_home():
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    out = ((2 * x.to("cuda") + 1) ** 2).mean()
    assert out.device == "cuda" and out.grad_fn.name() == "MeanBackward0"
    out.backward()
    assert x.grad.device == "cpu"  # through ToCopyBackward0, back to the leaf's device
    np.testing.assert_allclose(x.grad.numpy(), 4 * (2 * x.detach().numpy() + 1) / 6, rtol=1e-6)


def test_eager_ops_and_backward_on_cuda_equal_cpu():
    a = RNG.standard_normal((3, 4))
    b = RNG.standard_normal((4, 5))

    def f(x, w):
        h = (x @ w).tanh()
        return (h.softmax(-1) * h.exp()).sum(0).logsumexp(0) + x[:, 1:3].amax() - x.abs().mean()

    grads = []
    for device in ("cpu", "cuda"):
        x = tg.tensor(a, device=device, requires_grad=True)
        w = tg.tensor(b, device=device, requires_grad=True)
        out = f(x, w)
        out.backward()
        assert out.device == device and x.grad.device == device
        grads.append((out.item(), x.grad.cpu().numpy(), w.grad.cpu().numpy()))
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # ops are compiled once per structure: the same op on another shape compiles nothing new
    x = tg.tensor(a, device="cuda")
    (x * 2 + 1).sum()
    before = cuda_eager.stats["compiles"]
    y = tg.tensor(RNG.standard_normal((5, 7)), device="cuda")
    np.testing.assert_allclose((y * 2 + 1).sum().item(), (y.cpu().numpy() * 2 + 1).sum())
    assert cuda_eager.stats["compiles"] == before


def test_gradcheck_on_cuda():
    x = tg.tensor(RNG.standard_normal((2, 3)), device="cuda", requires_grad=True)
    assert tg.gradcheck(lambda t: (t.sigmoid() * t).sum(1), (x,))


def test_in_place_updates_on_cuda():
    p = tg.tensor([1.0, 2.0, 3.0], device="cuda")
    alias = p.detach()
    with tg.no_grad():
        p.add_(tg.tensor([1.0, 1.0, 1.0], device="cuda"), alpha=2.0)
        p.mul_(0.5)
    assert p.tolist() == [1.5, 2.0, 2.5] and alias.tolist() == [1.5, 2.0, 2.5]
    p[1] = 7.0
    assert p.tolist() == [1.5, 7.0, 2.5]
    leaf = tg.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        leaf.add_(1.0)


def test_mixing_devices_is_an_error_naming_the_op_and_the_fix():
    x = tg.ones(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match=r"add: Expected all tensors to be on the same device.*"):
        x + tg.ones(2, 3)
    # 0-d CPU tensors and numbers are fine, as in PyTorch
    assert (x * tg.tensor(2.0) + 1).sum().item() == 18.0
    with pytest.raises(TypeError, match=r"Use Tensor.cpu\(\)"):
        x.numpy()


def test_module_to_cuda_and_a_jitted_training_step_match_the_cpu():
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    ref = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    ref.load_state_dict(model.state_dict())
    params = list(model.parameters())
    assert model.to("cuda") is model and list(model.parameters()) == params  # in place
    assert all(p.device == "cuda" for p in model.parameters())
    opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ropt = tg.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    x = tg.randn(5, 4)
    y = tg.tensor([0, 1, 2, 1, 0])

    def step(m, o, x, y):
        o.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        o.step()
        return loss

    jstep = tg.jit(step, static_argnums=(0, 1), device="cuda")
    xc, yc = x.to("cuda"), y.to("cuda")
    for _ in range(2):  # the first call creates the momentum buffers (eagerly, on the GPU)
        got = jstep(model, opt, xc, yc)
        want = step(ref, ropt, x, y)
        assert got.device == "cuda"
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)
    assert jstep.stats["traces"] == 1 and jstep.stats["eager_calls"] == 1
    for p, q in zip(model.parameters(), ref.parameters()):
        assert p.device == "cuda" and p.grad.device == "cuda"  # state stays on the GPU
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), atol=1e-6)
        assert opt.state[p]["momentum_buffer"].device == "cuda"
    # the learning rate is a runtime scalar on the CUDA target too: it takes effect, no retrace
    for lr in (0.02, 0.0):
        opt.param_groups[0]["lr"] = ropt.param_groups[0]["lr"] = lr
        np.testing.assert_allclose(
            jstep(model, opt, xc, yc).item(), step(ref, ropt, x, y).item(), rtol=1e-6
        )
    assert jstep.stats["traces"] == 1
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), atol=1e-6)


def test_jit_cuda_is_size_generic_and_keeps_data_on_the_device():
    f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()), device="cuda")
    for n in (3, 5, 8):
        a = RNG.standard_normal((2, n)).astype(np.float32)
        value, grad = f(tg.tensor(a, device="cuda"))
        assert value.device == "cuda" and grad.device == "cuda"
        np.testing.assert_allclose(value.item(), ((2 * a + 1) ** 2).mean(), rtol=1e-6)
        np.testing.assert_allclose(grad.cpu().numpy(), 4 * (2 * a + 1) / a.size, rtol=1e-6)
    assert f.stats["traces"] == 3 and f.stats["compiles"] == 1 and f.stats["host_steps"] == 0
    # host inputs are copied in; results still live on the GPU
    assert f(tg.ones(2, 3))[0].device == "cuda"
    src = f.source(tg.ones(2, 3))
    # one grid-stride kernel computes the value and the gradient in one pass, a one-thread
    # kernel finishes the mean; every statement is commented with its tape equation
    assert src.count("@cuda.jit") == 2 and src.count("cuda.atomic.add") == 1
    # f.source() shows the tape's names and sizes; the compiled text has neither (one compiled
    # module serves every size)
    assert "# e:f32[] = mean[dims=(0, 1), keepdim=False] d  (accumulate)" in src
    compiled = f._entry_for((tg.ones(2, 3),), {}).executable.steps[0].source
    assert "# k:f32[] = mean[dims=(0, 1), keepdim=False] f  (accumulate)" in compiled
    assert "def segment(" in compiled and "2, 3" not in compiled and "[2,3]" not in compiled


def test_partial_reductions_use_one_block_per_output():
    x = tg.tensor(RNG.standard_normal((3, 4, 5)), device="cuda")

    def stats(x):
        return x.sum((0, 2), keepdim=True), x.amax(1), x.logsumexp(2), (x * x).mean()

    f = tg.jit(stats, device="cuda")
    for got, want in zip(f(x), stats(x.cpu())):
        np.testing.assert_allclose(got.cpu().numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
    src = f.source(x)
    assert "reduce_grid(" in src and "_sh = cuda.shared.array(TPB, float64)" in src


def test_nan_propagates_through_max_on_cuda():
    x = tg.tensor([[1.0, float("nan"), 3.0], [1.0, 2.0, 3.0]], device="cuda")
    got = x.amax(1).cpu().numpy()
    assert np.isnan(got[0]) and got[1] == 3.0


def test_cuda_modules_go_to_the_disk_cache(tmp_path, monkeypatch):
    from tracegrad.runtime import compile_cache

    monkeypatch.setenv("TRACEGRAD_CACHE_DIR", str(tmp_path))
    compile_cache.clear_memory()
    f = tg.jit(lambda x: (x.sin() * 3).sum(1), device="cuda")
    np.testing.assert_allclose(f(tg.ones(2, 2)).cpu().numpy(), [6 * np.sin(1.0)] * 2, rtol=1e-6)
    files = list(tmp_path.glob("tg_*.py"))
    assert files and "@cuda.jit(cache=True)" in files[0].read_text()


def test_a_numpy_numba_cuda_cannot_compile_for_is_named():
    # numba-cuda <= 0.30.4 with numpy >= 2.5 (np.row_stack removed) fails every kernel compile
    # with a bare AttributeError; tracegrad names the versions and the fix instead
    code = (
        "import numpy as np\n"
        "del np.row_stack\n"
        "import tracegrad as tg\n"
        "try:\n"
        "    tg.ones(2, device='cuda')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "numba-cuda" in out.stdout and "row_stack" in out.stdout, out.stdout + out.stderr
    assert "numpy<2.5" in out.stdout


@pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "0", reason="a real GPU is present"
)
def test_a_clear_error_without_a_gpu():
    code = (
        "import tracegrad as tg\n"
        "try:\n"
        "    tg.jit(lambda x: x * 2, device='cuda')(tg.ones(2))\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if "no CUDA GPU" not in out.stdout:
        pytest.skip("this machine has a GPU")
    assert "NUMBA_ENABLE_CUDASIM=1" in out.stdout and "device='cpu'" in out.stdout


def test_the_cuda_benchmark_checks_and_times_its_systems():
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from benchmarks import cuda as bench

    medians = bench.main(["--n", "300", "--repeats", "1"])
    assert {"tracegrad jit (cuda)", "device copy (limit)", "hand-fused numba.cuda"} <= set(medians)
    assert all(m > 0 for m in medians.values())


def test_in_place_through_a_view_of_a_cuda_tensor_is_refused():
    # views of CUDA tensors are copies: a change through one would be lost, so it is an error
    x = tg.zeros(2, 3, device="cuda")
    row = x[0]
    with pytest.raises(RuntimeError, match="view .* of a CUDA tensor"):
        row.add_(1.0)
    own = row.clone()
    own.add_(1.0)
    x[0] = own
    assert x.cpu().tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    d = x.detach()  # detach() shares the data, as in PyTorch
    d.mul_(2.0)
    assert x.sum().item() == 6.0


GPU = pytest.mark.skipif(
    cuda_device.simulated(), reason="needs a real GPU (NUMBA_ENABLE_CUDASIM=0)"
)


@pytest.mark.gpu
@GPU
def test_a_new_process_loads_cuda_kernels_from_the_disk_cache(tmp_path):
    code = (
        "import tracegrad as tg\n"
        "f = tg.jit(tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean()), device='cuda')\n"
        "f(tg.ones(4, 5, device='cuda'))\n"
        "print(f.stats['compiles'], f.stats['disk_hits'])\n"
    )
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=str(tmp_path))
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert runs[0].stdout.split() == ["1", "0"], runs[0].stderr
    assert runs[1].stdout.split() == ["0", "1"], runs[1].stderr


@pytest.mark.gpu
@GPU
def test_large_shapes_on_a_real_gpu():
    # more elements than one grid covers (grid-stride), rows longer than a block
    a = RNG.standard_normal((300, 2000)).astype(np.float32)
    x = tg.tensor(a, device="cuda")
    f = tg.jit(lambda x: (x.softmax(1) * x).sum(1).mean() + (x @ x.T).mean(), device="cuda")
    want = (lambda x: (x.softmax(1) * x).sum(1).mean() + (x @ x.T).mean())(tg.tensor(a))
    np.testing.assert_allclose(f(x).item(), want.item(), rtol=1e-4)


@pytest.mark.gpu
@GPU
def test_pooled_result_buffers_are_never_reused_while_held():
    # results of 1 MiB and more come from a pool; one the caller keeps (or a view of it) must
    # not be handed out again
    f = tg.jit(lambda x: x * 2 + 1, device="cuda")
    a = tg.ones(1 << 19, device="cuda")
    first = f(a)
    view = f(a).reshape(1 << 10, 1 << 9)  # only a view of the second result survives
    third = f(a * 3)
    assert first.cpu().numpy().max() == 3.0 and view.cpu().numpy().max() == 3.0
    assert third.cpu().numpy().max() == 7.0


def test_a_cpu_function_refuses_cuda_tensors_clearly():
    w = tg.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match=r"compiles for the CPU.*argument of shape \(3,\)"):
        tg.jit(lambda x: x * 2)(tg.ones(3, device="cuda"))
    with pytest.raises(RuntimeError, match=r"captured tensor of shape \(3,\) is on cuda:0"):
        tg.jit(lambda x: x * w)(tg.ones(3))


def test_eager_training_on_cuda_matches_the_cpu_step_after_step():
    tg.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ref = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ref.load_state_dict(model.state_dict())
    model.cuda()
    opt = tg.optim.Adam(model.parameters(), lr=0.05)
    ropt = tg.optim.Adam(ref.parameters(), lr=0.05)
    x, y = tg.randn(6, 3), tg.tensor([0, 1, 1, 0, 1, 0])
    for _ in range(3):  # parameters change in place between steps (views of them are retaken)
        for m, o, xx, yy in ((model, opt, x.cuda(), y.cuda()), (ref, ropt, x, y)):
            o.zero_grad()
            nn.functional.cross_entropy(m(xx), yy).backward()
            o.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), atol=1e-6)


def test_indexing_joining_and_gathers_compile_to_cuda_kernels():
    a = RNG.standard_normal((4, 5))
    labels = np.array([4, 0, -1, 2])

    def f(x, i):
        rows = x[1:4:2, ::-2] * 2 + x[None, -1, :3]  # basic indexing: strided gathers
        both = tg.cat([rows, x[:2, 2:]], 0)  # cat
        picked = x.gather(1, i[:, None])  # gather, negative index wrapping
        y = x.clone()
        y[0, 1:3] = tg.tensor([7.0, 8.0], dtype=x.dtype, device=x.device)  # setitem
        return both.sum() + picked.sum() + y.sum()

    gf = tg.jit(tg.value_and_grad(f), device="cuda")
    value, grad = gf(tg.tensor(a, device="cuda"), tg.tensor(labels, device="cuda"))
    want_v, want_g = tg.value_and_grad(f)(tg.tensor(a), tg.tensor(labels))
    np.testing.assert_allclose(value.item(), want_v.item(), rtol=1e-12)
    np.testing.assert_allclose(grad.cpu().numpy(), want_g.numpy(), rtol=1e-12, atol=1e-12)
    assert gf.stats["host_steps"] == 0  # scatter_add (gather's adjoint), unindex, full: kernels
    src = gf.source(tg.tensor(a, device="cuda"), tg.tensor(labels, device="cuda"))
    assert "cuda.atomic.add(" in src and "_gather" in src and "_cat" in src
    # an index out of range is an IndexError naming the op and the shapes, as on the CPU
    bad = tg.tensor(np.array([0, 9, 1, 2]), device="cuda")
    with pytest.raises(
        IndexError, match=r"(gather|scatter_add): index out of range for dim 1 of size"
    ):
        gf(tg.tensor(a, device="cuda"), bad)


def test_convolution_pooling_and_argmax_run_as_cuda_kernels():
    import tracegrad.nn.functional as F

    x = RNG.standard_normal((2, 4, 6, 5))
    w = RNG.standard_normal((6, 2, 3, 2))

    def f(x, w):  # grouped, strided, dilated, padded: every index path of im2col/col2im
        y = F.conv2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
        z = F.max_pool2d(y.relu(), 2, padding=1)
        return (z * z).sum() + x.amax()

    g = tg.jit(tg.value_and_grad(f, argnums=(0, 1)), device="cuda")
    value, (gx, gw) = g(tg.tensor(x, device="cuda"), tg.tensor(w, device="cuda"))
    want, (wx, ww) = tg.value_and_grad(f, argnums=(0, 1))(tg.tensor(x), tg.tensor(w))
    np.testing.assert_allclose(value.item(), want.item(), rtol=1e-12)
    np.testing.assert_allclose(gx.cpu().numpy(), wx.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(gw.cpu().numpy(), ww.numpy(), rtol=1e-11, atol=1e-12)
    assert g.stats["host_steps"] == 0  # batched matmuls (groups), argmax, fold: all kernels
    a = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 5.0, 5.0, 1.0]])
    for fn in (lambda t: t.argmax(1), lambda t: t.argmin(1), lambda t: t.argmax()):
        assert fn(tg.tensor(a, device="cuda")).cpu().tolist() == fn(tg.tensor(a)).tolist()


def test_cross_entropy_on_cuda_picks_labels_in_the_fused_loops():
    import tracegrad.nn.functional as F

    a = RNG.standard_normal((5, 4))
    y = np.array([0, 3, -100, 1, 2])
    f = tg.jit(tg.value_and_grad(F.cross_entropy), device="cuda")
    value, grad = f(tg.tensor(a, device="cuda"), tg.tensor(y, device="cuda"))
    want, wgrad = tg.value_and_grad(F.cross_entropy)(tg.tensor(a), tg.tensor(y))
    np.testing.assert_allclose(value.item(), want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad.cpu().numpy(), wgrad.numpy(), rtol=1e-12, atol=1e-15)
    assert f.stats["host_steps"] == 0
    with pytest.raises(IndexError, match="nll_loss: target out of range"):
        f(tg.tensor(a, device="cuda"), tg.tensor(np.array([0, 1, 2, 3, 4]), device="cuda"))


def test_random_numbers_in_a_cuda_function_equal_the_cpu_draws():
    f = tg.jit(lambda x: x + tg.rand(3, device="cuda"), device="cuda")
    x = tg.ones(3).to("cuda")
    tg.manual_seed(2)
    got = [f(x).cpu().numpy() for _ in range(2)]
    tg.manual_seed(2)
    want = [(tg.ones(3) + tg.rand(3)).numpy() for _ in range(2)]
    np.testing.assert_array_equal(got, want)
    assert f.stats["traces"] == 1 and not np.array_equal(got[0], got[1])


def test_compiled_backward_on_the_device():
    """A jitted function on CUDA tensors that require grad: a compiled forward and a compiled
    backward, gradients on the device equal to the CPU's eager ones (one output unused: its
    zero cotangent is made on the device)."""
    wn = np.array([1.0, 2.0, 3.0], np.float32)
    xn = np.array([0.1, 0.2, 0.3], np.float32)
    w = tg.tensor(wn, requires_grad=True, device="cuda")
    x = tg.tensor(xn, requires_grad=True, device="cuda")
    f = tg.jit(lambda x: ((x * w).sin().sum(), x.sum() * 2), device="cuda")
    loss, unused = f(x)
    assert loss.grad_fn.name() == "CompiledFunctionBackward" and loss.device == "cuda"
    loss.backward()
    we, xe = tg.tensor(wn, requires_grad=True), tg.tensor(xn, requires_grad=True)
    (xe * we).sin().sum().backward()
    assert w.grad.device == "cuda" and x.grad.device == "cuda"
    np.testing.assert_allclose(w.grad.cpu().numpy(), we.grad.numpy(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.cpu().numpy(), xe.grad.numpy(), rtol=1e-5)
    assert f.stats["eager_calls"] == 0
