"""The main job (examples/train_digits.py): a small CNN on scikit-learn's digits, jitted."""

import pathlib
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))

import train_digits  # noqa: E402


def test_jitted_training_reaches_95_percent_and_compiles_once():
    result = train_digits.train("jit", epochs=3, batch_size=64, lr=3e-3, seed=0)
    assert result["accuracy"] >= 0.95
    stats = result["stats"]
    # the first call runs eagerly (Adam makes its state); batches of 64 and the last, smaller
    # batch are two traces
    assert stats["eager_calls"] == 1 and stats["traces"] == 2
    assert stats["memory_hits"] == 3 * 23 - 3


@pytest.mark.gpu
def test_the_main_job_runs_on_cuda():
    # a few batches, one epoch; about 10 minutes on the simulator, so a real GPU only
    from tracegrad import devices

    if devices.simulated() or not devices.available():
        pytest.skip("needs a real GPU (NUMBA_ENABLE_CUDASIM=0)")
    result = train_digits.train(
        "jit", epochs=1, batch_size=8, lr=3e-3, seed=0, device="cuda", limit=24
    )
    assert 0.0 <= result["accuracy"] <= 1.0 and result["stats"]["host_steps"] == 0
    assert result["stats"]["traces"] == 1 and result["stats"]["eager_calls"] == 1
