#!/usr/bin/env bash
# One pass over everything that needs a real NVIDIA GPU, for a machine lent for a few minutes
# that already has numba, numba-cuda, pytest, hypothesis (and optionally torch) installed and no
# network: the CUDA tests on the device (gpu-marked ones included, pytest-xdist when present),
# the main job's CUDA test, then the CUDA benchmark.
# Run from the project root:  bash benchmarks/gpu_pass.sh [OUTDIR]   (OUTDIR: $OUT or ./gpu_out)
# The lent H200 image (2026-11) has numpy 2.5.2, which numba-cuda 0.30.4 cannot compile kernels
# with (tracegrad says so): carry a numpy 2.4 wheel for Python 3.12 as .whl/ and install it first,
#   pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -u
out=${1:-${OUT:-gpu_out}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 NUMBA_ENABLE_CUDASIM=0
{
  nvidia-smi -L
  $py -c "import sys, numpy, numba, numba_cuda; print(sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)"
} 2>&1 | tee "$out/gpu_tests.log"
timeout ${BENCH_TIMEOUT:-120} $py -m benchmarks.cuda --n 100000000 --repeats 20 >"$out/gpu_bench.log" 2>&1
echo "bench exit $?" | tee -a "$out/gpu_bench.log"
xdist=""
$py -c "import xdist" 2>/dev/null && xdist="-n 12"
# each failure's traceback goes to gpu_failures.log as it happens (tests/conftest.py), and -v
# names every test as it ends: a run cut short by its timeout still says what failed
export TRACEGRAD_TEST_FAILURE_LOG=$out/gpu_failures.log
timeout ${TESTS_TIMEOUT:-300} $py -m pytest -v -rfE --maxfail=10 -p no:cacheprovider $xdist \
  --durations=8 -W ignore::DeprecationWarning -p no:benchmark -m "gpu or not gpu" \
  tests/cuda tests/test_train_digits.py::test_the_main_job_runs_on_cuda \
  >>"$out/gpu_tests.log" 2>&1
echo "tests exit $?" | tee -a "$out/gpu_tests.log"
grep -E "FAILED|ERROR" "$out/gpu_tests.log" | tail -n 15; tail -n 5 "$out/gpu_tests.log"; tail -n 20 "$out/gpu_bench.log"
