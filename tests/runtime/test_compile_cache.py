"""The compile cache: size-generic source (no recompile across batch sizes and numbers), the
disk level across processes, tampered and truncated files, concurrent writers, privacy."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.runtime import compile_cache

SCRIPT = textwrap.dedent(
    """
    import sys
    import tracegrad as tg

    def step(x, lr):
        return tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean() * lr)(x)

    f = tg.jit(step, parallel=False)
    value, grad = f(tg.ones(3, 4), 0.5)
    assert abs(value.item() - 4.5) < 1e-6, value
    assert abs(grad.numpy()[0, 0] - 0.5 * 4 * 3 / 12) < 1e-6, grad
    print(f.stats["compiles"], f.stats["disk_hits"])
    """
)


def run_script(cache: Path, extra_env: dict | None = None) -> tuple[int, int]:
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=str(cache))
    env.pop("TRACEGRAD_DISABLE_DISK_CACHE", None)
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    compiles, hits = done.stdout.split()
    return int(compiles), int(hits)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    # compile counts are per process: a source another test (a random program) compiled
    # earlier would be found, not compiled, here
    monkeypatch.setattr(compile_cache, "_memory", {})
    monkeypatch.setenv("TRACEGRAD_CACHE_DIR", str(tmp_path))


def test_no_recompile_across_batch_sizes_and_numbers(fresh_cache):
    def step(x, lr):
        return tg.value_and_grad(lambda x: ((2 * x + 1) ** 2).mean() * lr)(x)

    f = tg.jit(step, parallel=False)
    for batch, lr in [(2, 0.1), (5, 0.1), (7, 0.3), (1, 2.0)]:
        value, grad = f(tg.ones(batch, 3), lr)
        np.testing.assert_allclose(value.item(), 9 * lr, rtol=1e-6)
        np.testing.assert_allclose(
            grad.numpy(), np.full((batch, 3), lr * 12 / (3 * batch)), rtol=1e-6
        )
    assert f.stats["traces"] == 4  # retracing is cheap Python ...
    assert f.stats["compiles"] == 1  # ... and finds the same source: compiled once


def test_a_new_broadcast_pattern_is_a_new_kernel(fresh_cache):
    f = tg.jit(lambda x, y: x * y, parallel=False)
    f(tg.ones(3, 4), tg.ones(3, 4))
    f(tg.ones(5, 2), tg.ones(5, 2))  # new sizes, same pattern: no compile
    f(tg.ones(3, 4), tg.ones(1, 4))  # y broadcasts along dim 0: another kernel
    assert f.stats["compiles"] == 2


def test_disk_cache_serves_a_second_process(tmp_path):
    assert run_script(tmp_path) == (1, 0)
    assert run_script(tmp_path) == (0, 1)
    files = list(tmp_path.glob("tg_*.py"))
    assert len(files) == 1


def test_cache_directory_is_private(tmp_path):
    cache = tmp_path / "fresh"
    run_script(cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for f in cache.glob("tg_*.py"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["tamper", "truncate", "foreign"])
def test_damaged_module_is_rebuilt_never_imported(tmp_path, damage):
    run_script(tmp_path)
    (module,) = tmp_path.glob("tg_*.py")
    good = module.read_bytes()
    marker = tmp_path / "executed"
    evil = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    if damage == "tamper":
        module.write_bytes(evil + good)
    elif damage == "truncate":
        module.write_bytes(good[: len(good) // 2])
    else:
        module.write_bytes(evil)
    compiles, hits = run_script(tmp_path)
    assert not marker.exists()  # the damaged bytes never ran
    assert module.read_bytes() == good  # rebuilt from the source it must hold
    assert compiles + hits == 1


def test_concurrent_writers_do_not_corrupt_each_other(tmp_path):
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=str(tmp_path))
    env.pop("TRACEGRAD_DISABLE_DISK_CACHE", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    (module,) = tmp_path.glob("tg_*.py")
    assert compile_cache.source_hash(module.read_text()) == module.name[3:-3]
    assert not list(tmp_path.glob("*.tmp"))
    assert run_script(tmp_path) == (0, 1)


def test_disabling_the_disk_cache_writes_nothing(tmp_path):
    env = {"TRACEGRAD_DISABLE_DISK_CACHE": "1"}
    assert run_script(tmp_path, env) == (1, 0)
    assert not list(tmp_path.glob("tg_*.py"))


def test_output_buffers_are_reused_only_when_nobody_holds_them():
    f = tg.jit(lambda x: x * 2 + 1, parallel=False)
    first = f(tg.ones(1000))
    second = f(tg.full((1000,), 2.0))
    assert first.numpy() is not second.numpy()  # the first result is still held
    assert first.tolist()[0] == 3.0 and second.tolist()[0] == 5.0
    kept = first.numpy()[:10]  # a view keeps the buffer alive too
    del first
    third = f(tg.full((1000,), 3.0))
    assert kept[0] == 3.0 and third.tolist()[0] == 7.0
    del second
    buffer = f(tg.ones(1000)).numpy()
    again = f(tg.ones(1000)).numpy()
    assert buffer is not again  # `buffer` is held: not reused
