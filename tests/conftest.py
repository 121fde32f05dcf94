import pathlib
import sys

# shared test helpers (op_cases.py) import as top-level modules
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import os  # noqa: E402
import tempfile  # noqa: E402

# The CUDA target is tested on Numba's simulator unless told otherwise: on a machine with a GPU,
# NUMBA_ENABLE_CUDASIM=0 runs tests/cuda on the real device. Set before numba.cuda is imported
# (tracegrad imports it only when CUDA is first asked for).
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# Compiled kernels go to a private temporary cache for the test session, never to the user's
# ~/.cache/tracegrad (subprocesses started by tests inherit it).
if "TRACEGRAD_TEST_KEEP_CACHE_DIR" not in os.environ:
    os.environ["TRACEGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tracegrad-test-cache-")

# tg.jit blocks on its first call here: a test that compares compiled results with eager ones
# must get the compiled tier, not the eager calls that run while the background compile worker
# is busy (tests/runtime/test_tiered.py tests that tier and the switch, with block=False).
os.environ.setdefault("TRACEGRAD_JIT_BLOCK", "1")
# ...and every compiled program checks that its segments were called with the argument types
# the driver predicted, the types the compile worker compiles (executor.check_signatures)
os.environ.setdefault("TRACEGRAD_CHECK_SIGNATURES", "1")


def pytest_runtest_logreport(report):
    """With TRACEGRAD_TEST_FAILURE_LOG set, each failure's traceback is appended to that file as
    it happens, so a run cut short by a time limit (a GPU lent for minutes) still names its
    failures. Under pytest-xdist the workers write; the controller's copy of a report is skipped."""
    path = os.environ.get("TRACEGRAD_TEST_FAILURE_LOG")
    if not path or not report.failed or getattr(report, "node", None) is not None:
        return
    with open(path, "a") as f:
        f.write(f"=== {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")
