import pathlib
import sys

# shared test helpers (op_cases.py) import as top-level modules
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import os  # noqa: E402
import tempfile  # noqa: E402

# Compiled kernels go to a private temporary cache for the test session, never to the user's
# ~/.cache/tracegrad (subprocesses started by tests inherit it).
if "TRACEGRAD_TEST_KEEP_CACHE_DIR" not in os.environ:
    os.environ["TRACEGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tracegrad-test-cache-")
