"""examples/train_charlm.py: a nanoGPT-style model written as for PyTorch runs eagerly and
samples text (the jitted run equals it to 5e-7 but compiles for minutes: not in CI)."""

import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))

import train_charlm  # noqa: E402


def test_a_few_eager_steps_and_a_sample():
    result = train_charlm.train("eager", steps=4, batch=4, block=16)
    assert len(result["losses"]) == 4 and all(math.isfinite(v) for v in result["losses"])
    assert result["losses"][0] > 3.0  # about log(vocab) at the start
    assert result["sample"].startswith("def") and len(result["sample"]) == 3 + 120
