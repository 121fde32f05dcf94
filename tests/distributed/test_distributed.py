"""tracegrad.distributed and DistributedDataParallel, run for real: pytest starts
`mpiexec -n 2` (one thread per rank) on tests/distributed/ddp_checks.py and asserts on what rank
0 reports. Skipped only where mpi4py or mpiexec is missing
(`pip install tracegrad[distributed]`)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.utils.data.distributed import DistributedSampler

HERE = pathlib.Path(__file__).parent


def _mpiexec() -> str | None:
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _launch(
    script: str, n: int = 2, timeout: int = 300, extra: list | None = None
) -> subprocess.CompletedProcess:
    pytest.importorskip("mpi4py", reason="needs mpi4py: pip install 'tracegrad[distributed]'")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("needs mpiexec (the mpich wheel: pip install 'tracegrad[distributed]')")
    env = dict(
        os.environ,
        MPIEXEC_TIMEOUT=str(timeout),  # hydra kills the whole job after this many seconds
        OMP_NUM_THREADS="1",
        NUMBA_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [mpiexec, "-n", str(n), sys.executable, script, *(extra or [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )


@pytest.fixture(scope="module")
def results() -> dict:
    out = _launch(str(HERE / "ddp_checks.py"))
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULTS ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-5000:]
    return json.loads(lines[0][len("RESULTS ") :])


def test_collectives_equal_numpy(results):
    base = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(results["all_reduce_sum"], base * 1 + base * 2)
    np.testing.assert_array_equal(results["all_reduce_max"], np.arange(6.0) * 2)
    np.testing.assert_array_equal(results["all_reduce_avg"], [0.5] * 3)
    assert results["broadcast_from_1"] == [11, 11]
    assert results["all_gather"] == [[0.0, 0.0], [1.0, 1.0]]
    # inside tg.jit the all-reduce is a step of the program, run at every call
    assert results["jit_all_reduce"] == [4.0] * 3 + [8.0] * 3


@pytest.mark.parametrize(
    "case",
    [
        "mlp_sgd_eager",
        "mlp_adam_eager",
        "cnn_sgd_eager",
        "mlp_sgd_no_sync",
        "mlp_sgd_jit_no_sync",
        "mlp_sgd_jit_step",
        "mlp_adam_jit_step",
        "cnn_adam_jit_step",
        "mlp_adam_ddp_of_jit_model",
        "mlp_sgd_jit_step_mixed_tiers",
        "mlp_sgd_after_a_failed_backward",
    ],
)
def test_two_ranks_train_as_one_process_on_the_whole_batch(results, case):
    r = results[case]
    assert r["moved"] > 1e-3  # the training did something
    assert r["vs_one_process"] <= 1e-10
    if case.endswith("mixed_tiers"):
        # ranks that ran some steps eagerly and some compiled: the same averaged gradients,
        # applied through different code (fused, reassociated), so the last bits may differ
        assert r["across_ranks"] <= 1e-15
    else:
        assert r["across_ranks"] == 0.0  # the ranks hold identical parameters


def test_ranks_on_different_tiers_exchange_the_same_all_reduces(results):
    # rank 0 (block=True) ran calls 2-4 compiled, rank 1 (block=False) calls 2-3 eagerly while
    # its worker's job was held back: mlp_sgd_jit_step_mixed_tiers above still trained as one
    # process
    assert results["mixed_tiers_calls_while_compiling"] == [0, 2]
    # which is why a distributed job's tg.jit blocks unless told otherwise: compiled on the
    # first call, no eager calls, on every rank
    calls, compiled = results["distributed_jit_blocks_by_default"]
    assert calls == 0 and compiled >= 1


def test_cuda_tensors_take_part_through_the_host(results):
    # on the GPU (Numba's simulator in CI): parameters, buffers and gradients go through host
    # copies for MPI, with the same result
    if "mlp_sgd_cuda" not in results:
        pytest.skip("no CUDA GPU or simulator in the ranks")
    r = results["mlp_sgd_cuda"]
    assert r["moved"] > 1e-3 and r["vs_one_process"] <= 1e-10 and r["across_ranks"] == 0.0


def test_a_jitted_ddp_step_compiles_once(results):
    for key in ("mlp_sgd", "mlp_adam", "cnn_adam"):
        stats = results["stats_" + key]
        assert stats["traces"] == 1 and stats["eager_calls"] == 1, stats
        # [compiles, disk hits] per rank: the ranks ran the same functions, and each was
        # compiled by one rank only (the other waited on the cache's lock file, then loaded it)
        (c0, d0), (c1, d1) = results["compiles_" + key]
        assert c0 + d0 == c1 + d1 > 0
        assert c0 + c1 <= c0 + d0, results["compiles_" + key]


def test_a_failed_backward_leaves_nothing_stale(results):
    assert results["boom_raised"]  # then mlp_sgd_after_a_failed_backward trained right


def test_no_sync_is_guarded_in_a_jitted_function(results):
    # traced once inside no_sync (no all-reduce) and once outside (with them); then reused
    stats = results["stats_jit_no_sync"]
    assert stats["traces"] == 2 and stats["memory_hits"] + stats["disk_hits"] >= 6, stats


def test_a_jitted_step_starts_each_all_reduce_before_the_rest_of_the_backward(results):
    for key in ("mlp_sgd", "mlp_adam", "cnn_adam"):
        prog = results["program_" + key]
        assert prog["buckets"] >= 2 and prog["starts"] == prog["waits"] == prog["buckets"], prog
        assert prog["waits_after_starts"], prog
    # the MLP's first bucket (its last layer) starts while the earlier layers' gradient
    # matmuls have still to run: communication overlaps computation
    assert results["program_mlp_sgd"]["matmuls_after_first_start"] >= 2


def test_unused_parameters_and_different_models_are_clear_errors(results):
    assert "b.weight" in results["unused_error"]
    assert "find_unused_parameters=True" in results["unused_error"]
    assert results["unused_allowed"] == [True, True]
    assert "different models" in results["mismatch_error"]
    assert "(2, 3)" in results["mismatch_error"] and "(3, 3)" in results["mismatch_error"]


def test_the_sampler_is_the_same_permutation_split_across_ranks(results):
    mine = results["sampler"]
    assert results["sampler_len"] == len(mine) == 6
    # rank 0's share of the epoch-2 permutation of 11 items padded to 12
    perm = np.random.default_rng(3 + 2).permutation(11).tolist()
    assert mine == (perm + perm[:1])[0::2]


def test_a_rank_that_raises_ends_the_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import tracegrad as tg, tracegrad.distributed as dist\n"
        "dist.init_process_group('mpi')\n"
        "if dist.get_rank() == 1:\n"
        "    raise ValueError('rank 1 fails on purpose')\n"
        "t = tg.ones(3)\n"
        "dist.all_reduce(t)\n"  # rank 0 would wait here forever without the abort
        "print('not reached', t)\n"
    )
    out = _launch(str(script), timeout=60)
    assert out.returncode != 0
    assert "rank 1 fails on purpose" in out.stderr
    assert "not reached" not in out.stdout


# ------------------------------------------------------------------ in this process, no MPI


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (2, 4, False)])
def test_distributed_sampler_partitions_as_pytorch(n, replicas, drop_last):
    shares = [
        list(DistributedSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last))
        for r in range(replicas)
    ]
    per = (n - replicas) // replicas + (n % replicas != 0) if drop_last else -(-n // replicas)
    if drop_last and n % replicas == 0:
        per = n // replicas
    assert all(len(s) == per for s in shares)
    flat = sorted(i for s in shares for i in s)
    if drop_last:
        assert len(set(flat)) == len(flat)  # no index twice
    else:
        assert set(flat) == set(range(n))  # every index, padded by repeating the start
    with pytest.raises(ValueError, match="Invalid rank"):
        DistributedSampler(range(n), replicas, replicas)


def test_post_accumulate_grad_hooks_and_queued_callbacks():
    from tracegrad.autograd import engine

    w = tg.tensor([1.0, 2.0], requires_grad=True)
    seen, order = [], []

    def hook(t):
        seen.append(t.grad.numpy().copy())
        if len(order) == 0:
            engine.queue_callback(lambda: order.append("after the sweep"))
        order.append("hook")

    handle = w.register_post_accumulate_grad_hook(hook)
    (w * 3).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_array_equal(seen[0], [3.0, 3.0])
    np.testing.assert_array_equal(seen[1], [5.0, 7.0])  # after accumulation
    assert order == ["hook", "after the sweep", "hook"]
    handle.remove()
    (w * 3).sum().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(hook)
    with pytest.raises(RuntimeError, match="no backward is running"):
        engine.queue_callback(print)


def test_the_main_job_runs_data_parallel():
    # eager (the jitted DDP step is tested above): both ranks train, rank 0 reports
    script = HERE.parent.parent / "examples" / "train_digits.py"
    out = _launch(f"{script}", timeout=240, extra=["--ddp", "--mode", "eager", "--epochs", "2"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "data parallel over 2 ranks" in out.stdout
    assert "eager rank 0:" in out.stdout and "eager rank 1:" in out.stdout
    accuracy = float(out.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 90.0
