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
