"""The benchmark suite runs, writes its JSON schema, and reports a wrong result as wrong.
No timing is asserted."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.suite import System, Workload, measure_workload  # noqa: E402


def test_quick_run_of_the_smallest_workload_writes_the_json_schema(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "seed_1000",
            "--no-peers",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "| seed_1000 | tracegrad jit |" in done.stdout  # the Markdown table
    data = json.loads(out.read_text())
    assert data["schema"] == 1
    assert {"cpu", "cores", "platform", "versions"} <= set(data["machine"])
    assert data["machine"]["versions"]["tracegrad"]
    (w,) = data["workloads"]
    assert (w["name"], w["kind"], w["reference"], w["size"]) == (
        "seed_1000",
        "timed",
        "tracegrad jit",
        1000,
    )
    systems = {r["system"]: r for r in w["results"]}
    assert {
        "tracegrad jit",
        "tracegrad eager",
        "numpy by hand",
        "hand-fused numba",
        "np.copyto",
    } == set(systems)  # no peers
    for r in systems.values():
        assert r["status"] == "ok"
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert systems["tracegrad jit"]["ratio"] == 1.0
    assert systems["np.copyto"]["limit"] is True


def test_a_wrong_result_is_reported_wrong_and_not_timed():
    right = (np.float32(2.5), np.arange(4.0))
    w = Workload(
        "fake",
        "a workload with one wrong system",
        lambda: [
            System("tracegrad jit", lambda: right),
            System("agrees", lambda: (2.5, np.arange(4.0))),
            System("disagrees", lambda: (2.5, np.arange(4.0) + 1e-2)),
            System("fails", lambda: 1 / 0),
        ],
        repeats=3,
    )
    record = measure_workload(w, progress=lambda line: None)
    by = {r["system"]: r for r in record["results"]}
    assert by["agrees"]["status"] == "ok" and "median_ms" in by["agrees"]
    assert by["disagrees"]["status"] == "wrong" and "median_ms" not in by["disagrees"]
    assert by["fails"]["status"] == "failed" and "ZeroDivisionError" in by["fails"]["note"]


def test_time_blocks_alternates_whole_blocks_and_times_every_repeat():
    # each system runs `repeats` timed calls, in blocks of consecutive calls that alternate
    # between systems, each block after one untimed call (a fake clock: one tick per call)
    from benchmarks.timing import time_blocks

    calls = []
    ticks = iter(range(10_000))
    fns = {name: (lambda name=name: calls.append(name)) for name in "AB"}
    samples = time_blocks(fns, repeats=7, blocks=3, pause=0.0, clock=lambda: next(ticks))
    assert {k: len(v) for k, v in samples.items()} == {"A": 7, "B": 7}
    assert all(t == 1 for v in samples.values() for t in v)
    # blocks of 3, 2, 2 timed calls, each after one untimed call
    assert "".join(calls) == "AAAA" + "BBBB" + "AAA" + "BBB" + "AAA" + "BBB"
    with pytest.raises(ValueError, match="repeats and blocks"):
        time_blocks(fns, repeats=0)
