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
