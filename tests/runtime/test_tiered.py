"""Tiered execution: calls run eagerly while the compile worker builds a trace's functions,
then switch to the compiled program. Which tier runs never depends on timing here:
`compile_worker.hold()` keeps the jobs back (every call inside runs eagerly), `f.wait()` waits
for the worker before the calls that must run compiled."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn
from tracegrad.runtime import compile_cache, compile_worker


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    """An empty disk cache and no compiled functions in memory: every function is new."""
    monkeypatch.setenv("TRACEGRAD_CACHE_DIR", str(tmp_path / "cache"))
    compile_cache.clear_memory()
    yield tmp_path / "cache"
    compile_cache.clear_memory()


def make_model(seed=0):
    tg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(tg.float64)
    opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt


def make_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def batches(n):
    rng = np.random.default_rng(1)
    return [
        (tg.tensor(rng.standard_normal((4, 5))), tg.tensor(rng.integers(0, 3, 4))) for _ in range(n)
    ]


def lr_at(i):
    return 0.1 if i < 3 else 0.05  # changed between calls, in both tiers


def compiled_functions(f):
    return [
        fn
        for es in f._cache.values()
        for e in es
        for x in e.executables
        for fn in x.functions.values()
    ]


def test_eager_tier_then_compiled_tier_equal_eager(cold_cache):
    data = batches(6)
    model_e, opt_e = make_model()
    eager = make_step(model_e, opt_e)
    model_j, opt_j = make_model()
    f = tg.jit(make_step(model_j, opt_j), block=False)
    losses_e, losses_j = [], []
    with compile_worker.hold():  # the worker gets the job at the end of the block
        for i in range(3):
            opt_e.param_groups[0]["lr"] = opt_j.param_groups[0]["lr"] = lr_at(i)
            losses_e.append(eager(*data[i]).item())
            losses_j.append(f(*data[i]).item())
    # call 1 creates the momentum buffers (an eager call by design); 2 and 3 ran while compiling
    assert f.stats["traces"] == 1
    assert f.stats["calls_while_compiling"] == 2
    assert f.wait(timeout=600)
    for i in range(3, 6):
        opt_e.param_groups[0]["lr"] = opt_j.param_groups[0]["lr"] = lr_at(i)
        losses_e.append(eager(*data[i]).item())
        losses_j.append(f(*data[i]).item())
    assert f.stats["calls_while_compiling"] == 2  # the last three ran compiled
    assert f.stats["traces"] == 1
    np.testing.assert_allclose(losses_j, losses_e, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(model_j.named_parameters(), model_e.parameters()):
        np.testing.assert_allclose(
            p.detach().numpy(), q.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )
        buf_j = opt_j.state[p]["momentum_buffer"].numpy()
        buf_e = opt_e.state[q]["momentum_buffer"].numpy()
        np.testing.assert_allclose(buf_j, buf_e, rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_worker_compiles_and_this_process_only_loads(cold_cache):
    model, opt = make_model()
    f = tg.jit(make_step(model, opt), block=False)
    x, y = batches(1)[0]
    f(x, y)  # creates the optimizer state: eager
    f(x, y)  # traces, sends the job, runs eagerly
    assert f.wait(timeout=600)
    f(x, y)
    fns = compiled_functions(f)
    assert fns
    assert f.stats["compiles"] == len(fns)
    for fn in fns:
        # loaded from Numba's disk cache, which the worker wrote; never compiled here (a wrong
        # signature prediction would have made the compiled call compile it again)
        assert sum(fn.stats.cache_hits.values()) >= 1
        assert sum(fn.stats.cache_misses.values()) == 0
    # a new process finds the worker's machine code
    assert any(cold_cache.rglob("*.nbi"))


def test_compiled_module_forward_runs_eagerly_then_compiled(cold_cache):
    model_e, _ = make_model()
    model_j, _ = make_model()
    cm = tg.jit(model_j, block=False)
    x = tg.tensor(np.random.default_rng(2).standard_normal((4, 5)))
    with compile_worker.hold():
        out = cm(x)
        assert out.grad_fn.name() != "CompiledFunctionBackward"  # the eager graph
        out.sum().backward()
    assert cm.stats["calls_while_compiling"] == 1
    assert cm.wait(timeout=600)
    out2 = cm(x)
    assert out2.grad_fn.name() == "CompiledFunctionBackward"
    out2.sum().backward()
    model_e(x).sum().backward()
    expected = model_e(x)  # twice: model_j accumulated two backward passes
    expected.sum().backward()
    np.testing.assert_allclose(out2.detach().numpy(), expected.detach().numpy(), rtol=1e-12)
    for p, q in zip(model_j.parameters(), model_e.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_block_true_and_the_environment_default_compile_on_the_first_call(cold_cache, monkeypatch):
    x = tg.tensor(np.arange(6.0).reshape(2, 3))
    f = tg.jit(lambda a: (a.sin() * 2).sum(), block=True)
    monkeypatch.setenv("TRACEGRAD_JIT_BLOCK", "0")
    assert f(x).item() == pytest.approx(2 * np.sin(np.arange(6.0)).sum())
    assert f.stats["calls_while_compiling"] == 0 and f.stats["compiles"] >= 1
    monkeypatch.setenv("TRACEGRAD_JIT_BLOCK", "1")
    g = tg.jit(lambda a: (a.cos() * 2).sum())  # block=None: the environment decides
    assert g(x).item() == pytest.approx(2 * np.cos(np.arange(6.0)).sum())
    assert g.stats["calls_while_compiling"] == 0 and g.stats["compiles"] >= 1


def test_without_a_disk_cache_the_first_call_compiles(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_DISABLE_DISK_CACHE", "1")
    compile_cache.clear_memory()
    try:
        f = tg.jit(lambda a: (a.exp() - 1).sum(), block=False)
        x = tg.tensor(np.linspace(0, 1, 7))
        assert f(x).item() == pytest.approx((np.exp(np.linspace(0, 1, 7)) - 1).sum())
        assert f.stats["calls_while_compiling"] == 0
    finally:
        compile_cache.clear_memory()


def test_a_dead_worker_means_compiling_here_with_a_warning(cold_cache):
    f = tg.jit(lambda a: (a * 3 + 1).tanh().sum(), block=False)
    x = tg.tensor(np.linspace(-1, 1, 5))
    expected = np.tanh(np.linspace(-1, 1, 5) * 3 + 1).sum()
    with compile_worker.hold():
        assert f(x).item() == pytest.approx(expected)  # eager; the job is held
        pid = compile_worker.worker_pid()
        assert pid is not None
        compile_worker._worker.proc.kill()  # the worker dies before it gets the job
        compile_worker._worker.proc.wait()
    with pytest.warns(RuntimeWarning, match="compiling in the background failed"):
        assert f.wait(timeout=600)
    assert f(x).item() == pytest.approx(expected)  # compiled here
    assert f.stats["calls_while_compiling"] == 1
    assert f.stats["compiles"] >= 1
    # the next job starts a new worker
    g = tg.jit(lambda a: (a * 5).sin().sum(), block=False)
    g(x)
    assert g.wait(timeout=600)
    assert compile_worker.worker_pid() not in (None, pid)


def test_a_worker_that_cannot_start_means_compiling_here(cold_cache, monkeypatch):
    compile_worker.shutdown()

    def fail(*a, **k):
        raise OSError("no such interpreter")

    monkeypatch.setattr(compile_worker, "_Worker", fail)
    monkeypatch.setattr(compile_worker, "_failed_to_start", None)
    f = tg.jit(lambda a: (a * 7).cos().sum(), block=False)
    x = tg.tensor(np.linspace(0, 1, 4))
    with pytest.warns(RuntimeWarning, match="could not start"):
        assert f(x).item() == pytest.approx(np.cos(np.linspace(0, 1, 4) * 7).sum())
    assert f.stats["calls_while_compiling"] == 0 and f.stats["compiles"] >= 1
    g = tg.jit(lambda a: (a * 9).cos().sum(), block=False)  # no second try, no second warning
    g(x)
    assert g.stats["calls_while_compiling"] == 0


def test_the_worker_is_reaped_at_shutdown(cold_cache):
    f = tg.jit(lambda a: (a - 2).abs().sum(), block=False)
    f(tg.tensor(np.arange(3.0)))
    pid = compile_worker.worker_pid()
    assert pid is not None
    compile_worker.shutdown()
    with pytest.raises(ChildProcessError):  # reaped: not a zombie child of this process
        os.waitpid(pid, os.WNOHANG)
    assert compile_worker.worker_pid() is None


EXITS_WHILE_COMPILING = textwrap.dedent(
    """
    import tracegrad as tg
    from tracegrad.runtime import compile_worker
    f = tg.jit(lambda a: (a * 2 + 1).sqrt().sum(), block=False)
    f(tg.ones(3))
    print(compile_worker.worker_pid(), f.stats["calls_while_compiling"], f.stats["compiles"],
          flush=True)
    """
)


def run_script(cache, **env):
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=str(cache), TRACEGRAD_JIT_BLOCK="0", **env)
    done = subprocess.run(
        [sys.executable, "-c", EXITS_WHILE_COMPILING],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    pid, calls, compiles = done.stdout.split()
    return (None if pid == "None" else int(pid)), int(calls), int(compiles)


def test_exit_while_compiling_finishes_the_job_for_the_next_run(tmp_path):
    pid, calls, _ = run_script(tmp_path)
    assert calls == 1  # the process ended before its compile did (it never waited)
    # the worker, orphaned, finishes the job and exits (reaped by init: not left a zombie)
    deadline = time.monotonic() + 300
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    # the next run finds the machine code: loaded at the trace, no call runs eagerly
    pid, calls, compiles = run_script(tmp_path, TRACEGRAD_COMPILE_WORKER_AT_EXIT="kill")
    assert calls == 0 and compiles == 0
    assert pid is None  # no worker needed


def test_exit_with_kill_stops_the_worker_at_once(tmp_path):
    pid, calls, _ = run_script(tmp_path, TRACEGRAD_COMPILE_WORKER_AT_EXIT="kill")
    assert calls == 1
    assert not _alive(pid)  # killed and reaped by the exiting process


def _alive(pid):
    """Whether `pid` is a process that has not exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_signature_predictions_are_checked(monkeypatch):
    """The suite runs every program with TRACEGRAD_CHECK_SIGNATURES=1; a wrong prediction
    raises (this shows the check has teeth)."""
    from tracegrad.runtime.executor import NumbaExecutable

    monkeypatch.setenv("TRACEGRAD_CHECK_SIGNATURES", "1")
    monkeypatch.setattr(NumbaExecutable, "signature", lambda self, n: ("not", "this"))
    f = tg.jit(lambda a: (a * 11).sum(), block=True)
    with pytest.raises(AssertionError, match="was predicted to take"):
        f(tg.ones(2, 2))


def test_eager_calls_while_compiling_leave_the_worker_a_core(cold_cache):
    from tracegrad.runtime import blas_threads

    before = blas_threads.threads()
    if before is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS this process can reach")
    cpus = blas_threads._cpus()
    seen = []

    def f(a):
        seen.append(blas_threads.threads())  # at the trace, and at the eager call
        return (a * 2).sum()

    jf = tg.jit(f, block=False)
    with compile_worker.hold():
        jf(tg.ones(3))
    assert jf.stats["calls_while_compiling"] == 1
    assert seen[-1] == (cpus - 1 if before >= cpus and cpus > 1 else before)
    assert blas_threads.threads() == before  # restored after the call
    assert jf.wait(timeout=600)
    jf(tg.ones(3))  # compiled: the function body does not run, nothing changes
    assert blas_threads.threads() == before


def test_submitting_a_job_never_waits_for_the_worker(cold_cache):
    import signal
    import threading

    f = tg.jit(lambda a: (a + 3).cos().sum(), block=False)
    f(tg.ones(2))
    assert f.wait(timeout=600)
    pid = compile_worker.worker_pid()
    os.kill(pid, signal.SIGSTOP)  # a worker busy for as long as it takes
    try:
        # a job larger than a pipe's buffer: written by the worker's writer thread, not here
        big = [("x = 1\n" + "#" * 300_000, ())]
        returned = threading.Event()
        threading.Thread(
            target=lambda: (compile_worker.submit(str(cold_cache), big), returned.set()),
            daemon=True,
        ).start()
        assert returned.wait(60)
    finally:
        os.kill(pid, signal.SIGCONT)
        compile_worker.shutdown()


def test_a_mode_switch_while_compiling_takes_effect_in_both_tiers(cold_cache):
    # model.eval() between calls, while the train-mode trace is still compiling and after:
    # the eager tier runs the module as it is now, the compiled tier retraces for eval
    def make():
        tg.manual_seed(3)
        return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh()).to(tg.float64)

    ref, model = make(), make()
    cm = tg.jit(model, block=False)
    x = tg.tensor(np.random.default_rng(4).standard_normal((8, 5)))
    with tg.no_grad():
        with compile_worker.hold():
            np.testing.assert_allclose(cm(x).numpy(), ref(x).numpy(), rtol=1e-12)  # train
            model.eval()
            ref.eval()
            np.testing.assert_allclose(cm(x).numpy(), ref(x).numpy(), rtol=1e-12)  # eval, eager
        assert cm.stats["calls_while_compiling"] == 2
        assert cm.wait(timeout=600)
        np.testing.assert_allclose(cm(x).numpy(), ref(x).numpy(), rtol=1e-12)  # eval trace
        assert cm.wait(timeout=600)
        np.testing.assert_allclose(cm(x).numpy(), ref(x).numpy(), rtol=1e-12)  # compiled
        model.train()
        ref.train()
        np.testing.assert_allclose(cm(x).numpy(), ref(x).numpy(), rtol=1e-12)  # train, compiled
    for a, b in zip(model.buffers(), ref.buffers()):  # running stats updated alike
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    assert cm.stats["traces"] == 2
    assert cm.stats["calls_while_compiling"] == 3  # the two held, the eval trace's first call
