# The two commands of the README's Quickstart. Each creates .venv on first use and installs
# what it needs into it; later runs reuse it (reinstalling when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[examples]'
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

## run: the seed walkthrough (SEEDS.md), then the main job: a CNN trained on scikit-learn's
## digits, eagerly and jitted, with its test accuracy and the measured jit-vs-eager speedup
run: $(VENV)/.run-deps
	$(BIN)/python examples/seed_walkthrough.py
	$(BIN)/python examples/train_digits.py

## test: lint, then the whole test suite (what CI runs)
test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

$(VENV)/.bench-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

## bench: the benchmark suite, table at the end (BENCH_ARGS="--quick", "--only mlp",
## "--json out.json --plot seed.png"); PyTorch: pip install torch==2.13.0 first, if you have it
bench: $(VENV)/.bench-deps
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
