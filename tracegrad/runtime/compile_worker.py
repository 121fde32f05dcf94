"""Tiered execution's second half: a worker process that compiles segments in the background.

A new trace's Numba functions are compiled by this worker while the calls run eagerly (the
first tier; runtime/jit.py). The worker needs no arrays and no tape: a job is a list of
(segment source, Numba signature) pairs -- the driver knows every argument's type before
anything runs (`DriverWriter.segment_args`) -- and the disk cache directory. It compiles each
one with Numba's `cache=True` under the disk cache's lock file (`compile_cache.compiling`) and
answers when they are written; the calling process then loads the machine code from Numba's
cache (milliseconds) and switches to the compiled program. Numba writes its cache files
atomically (a temporary file, then a rename), so a half-written entry is never loaded, and a
failed job is compiled in the calling process instead (with a warning: the same error, where
it is the code's).

One worker per process, started on the first job (`python -m tracegrad.runtime.compile_worker`,
not `multiprocessing`: spawn would run the user's script again), reused by every jitted
function. It reads its jobs from a pipe. When the process exits (or dies) the pipe closes: the
worker finishes the jobs it was given, so that their machine code is in the disk cache for the
next run (a short script that exits before its compile is done would otherwise never get it),
and exits; it holds none of the parent's other file descriptors, so nothing waiting on the
parent's output waits on it. `TRACEGRAD_COMPILE_WORKER_AT_EXIT=kill` kills and reaps it at exit
instead (benchmarks timing processes one after another). A separate process, not a thread,
because Numba's compiler holds the GIL for most of a compile (a background thread made the
compile 2x and the eager calls 1.8x slower).

Protocol: each message is a 4-byte little-endian length, then a pickle. Parent to worker:
`(job_id, cache_dir, [(source, signature), ...])`; worker to parent: `(job_id, compiled,
error)` with `compiled` the number of functions it compiled (not found in Numba's cache) and
`error` None or the traceback's text.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import warnings
from typing import Any, BinaryIO

_HEADER = struct.Struct("<I")


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    """The next message, or None at end of file."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(header)
    data = stream.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


class Job:
    """One executable's functions being compiled by the worker."""

    def __init__(self, n: int) -> None:
        self.n = n  # functions in the job
        self.done = threading.Event()
        self.compiled = 0  # how many the worker compiled (the rest it found in Numba's cache)
        self.error: str | None = None  # why the worker did not finish it, if it did not

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


class _Worker:
    """The parent's end: the process, the jobs sent to it, the thread that reads its answers."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # the worker's own stdout is the protocol; it never starts workers of its own
        env["TRACEGRAD_COMPILE_WORKER"] = "child"
        # the same tracegrad as this process, wherever this one found it (a script run from a
        # source tree puts the tree on sys.path; `python -m` in the child would not)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH", "")) if p
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracegrad.runtime.compile_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("TRACEGRAD_DEBUG") else subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.jobs: dict[int, Job] = {}
        self.next_id = 0
        self.lock = threading.Lock()
        # jobs are written by a thread of their own: a job larger than the pipe's buffer would
        # otherwise block the submitting call until the worker finished its current job
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.writer = threading.Thread(
            target=self._write, name="tracegrad-compile-jobs", daemon=True
        )
        self.reader = threading.Thread(
            target=self._read, name="tracegrad-compile-answers", daemon=True
        )
        self.writer.start()
        self.reader.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, cache_dir: str, items: list[tuple[str, tuple]]) -> Job:
        job = Job(len(items))
        with self.lock:
            job_id = self.next_id
            self.next_id += 1
            self.jobs[job_id] = job
        self.outbox.put((job_id, cache_dir, items))
        return job

    def _write(self) -> None:
        while True:
            message = self.outbox.get()
            if message is None:  # end of input (exit): the worker finishes what it has
                break
            try:
                _send(self.proc.stdin, message)
            except (OSError, ValueError) as e:  # the worker is gone
                with self.lock:
                    job = self.jobs.pop(message[0], None)
                if job is not None:
                    job.error = f"the compile worker could not be reached ({e})"
                    job.done.set()
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def end_input(self, timeout: float) -> None:
        """Send what is queued, then close the worker's input (it exits after those jobs)."""
        self.outbox.put(None)
        self.writer.join(timeout)

    def _read(self) -> None:
        while True:
            try:
                message = _receive(self.proc.stdout)
            except Exception:  # noqa: BLE001 - a broken pipe: the worker died
                message = None
            if message is None:
                break
            job_id, compiled, error = message
            with self.lock:
                job = self.jobs.pop(job_id, None)
            if job is not None:
                job.compiled, job.error = compiled, error
                job.done.set()
        # the worker exited: every job still waiting fails (its functions compile in-process)
        code = self.proc.wait()
        with self.lock:
            jobs, self.jobs = list(self.jobs.values()), {}
        for job in jobs:
            job.error = f"the compile worker exited (status {code}) before finishing"
            job.done.set()

    def close(self) -> None:
        """Stop the worker now (a compile in flight is abandoned: nothing half-written is
        ever loaded) and reap it."""
        self.outbox.put(None)
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


_worker: _Worker | None = None
_worker_lock = threading.Lock()
_failed_to_start: str | None = None
_held: list[tuple[_Worker, str, list, Job]] | None = None  # hold(): jobs not yet sent


_blocking: set[str] = set()  # why tg.jit's block=None means True (block_by_default)


def block_by_default(reason: str, on: bool) -> None:
    """Make `tg.jit(..., block=None)` compile on the first call while `reason` holds: a
    distributed job, whose ranks must switch tiers at the same call (process_group.py)."""
    if on:
        _blocking.add(reason)
    else:
        _blocking.discard(reason)


def blocks_by_default() -> bool:
    """What `block=None` means now: TRACEGRAD_JIT_BLOCK=1, or a reason above."""
    return os.environ.get("TRACEGRAD_JIT_BLOCK", "0") == "1" or bool(_blocking)


def enabled() -> bool:
    """Whether a worker can take jobs (not inside the worker itself; not after one failed to
    start). Whether a jitted function uses it is `tg.jit`'s `block`."""
    return os.environ.get("TRACEGRAD_COMPILE_WORKER") != "child" and _failed_to_start is None


def submit(cache_dir: str, items: list[tuple[str, tuple]]) -> Job | None:
    """Send `items` to the worker (started now if needed); None when no worker can run (the
    caller compiles in-process; a warning said why, once)."""
    global _worker, _failed_to_start
    with _worker_lock:
        if _failed_to_start is not None:
            return None
        if _worker is None or not _worker.alive():
            try:
                _worker = _Worker()
            except (OSError, ValueError) as e:
                _failed_to_start = str(e)
                warnings.warn(
                    f"tracegrad: the background compile worker could not start ({e}); "
                    "tg.jit compiles in this process, and the first call of each new trace "
                    "waits for it",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return None
        worker = _worker
        if _held is not None:
            job = Job(len(items))
            _held.append((worker, cache_dir, items, job))
            return job
    return worker.submit(cache_dir, items)


class hold:
    """`with compile_worker.hold():` jobs submitted inside are sent to the worker only at the
    end of the block, so every call inside runs on the eager tier (for tests of the switch:
    which tier runs never depends on timing there)."""

    def __enter__(self) -> hold:
        global _held
        with _worker_lock:
            _held = []
        return self

    def __exit__(self, *exc: Any) -> None:
        global _held
        with _worker_lock:
            held, _held = _held or [], None
        for worker, cache_dir, items, job in held:
            sent = worker.submit(cache_dir, items)
            _relay(sent, job)


def _relay(source: Job, target: Job) -> None:
    def copy() -> None:
        source.wait()
        target.compiled, target.error = source.compiled, source.error
        target.done.set()

    if source.done.is_set():
        copy()
    else:
        threading.Thread(target=copy, daemon=True).start()


def worker_pid() -> int | None:
    """The worker's process id, None when none runs (tests)."""
    with _worker_lock:
        return _worker.proc.pid if _worker is not None and _worker.alive() else None


def shutdown() -> None:
    """Stop and reap the worker now (tests; TRACEGRAD_COMPILE_WORKER_AT_EXIT=kill at exit). The
    next job starts a new one."""
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    if worker is not None:
        worker.close()


def _at_exit() -> None:
    if os.environ.get("TRACEGRAD_COMPILE_WORKER_AT_EXIT") == "kill":
        shutdown()
        return
    # end of its input: the worker finishes the jobs it has, writes them to the disk cache and
    # exits (reparented to init, which reaps it). Jobs still queued are sent first (a second at
    # most: past that the worker is busy and the pipe full, and they are left out)
    worker = _worker
    if worker is not None:
        worker.end_input(timeout=1.0)
        try:
            worker.proc.stdin.close()
        except OSError:
            pass


atexit.register(_at_exit)


# ---- the worker's end ------------------------------------------------------------------------


def _serve() -> None:
    jobs_in = sys.stdin.buffer
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to stderr, never into the protocol
    from . import compile_cache

    while True:
        message = _receive(jobs_in)
        if message is None:
            return  # the parent closed the pipe (exit) or died
        job_id, cache_dir, items = message
        if os.environ.get("TRACEGRAD_CACHE_DIR") != cache_dir:
            # functions in memory wrote their machine code to the other directory
            os.environ["TRACEGRAD_CACHE_DIR"] = cache_dir
            compile_cache.clear_memory()
        compiled, error = 0, None
        try:
            for source, signature in items:
                fn = compile_cache.load(source)
                with compile_cache.compiling(source):
                    misses = sum(fn.stats.cache_misses.values())
                    fn.compile(signature)
                    compiled += sum(fn.stats.cache_misses.values()) - misses
        except Exception:  # noqa: BLE001 - reported to the parent, which compiles it itself
            import traceback

            error = traceback.format_exc()
        try:
            _send(answers, (job_id, compiled, error))
        except OSError:
            pass  # the parent has exited: the remaining jobs still fill the disk cache


if __name__ == "__main__":
    _serve()
