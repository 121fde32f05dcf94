"""Two cache levels for generated code.

* memory: source hash -> compiled Numba dispatcher, shared by every jitted function and every
  trace whose generated source is the same (a new batch size finds the same source);
* disk (`$TRACEGRAD_CACHE_DIR`, default `~/.cache/tracegrad`; off with
  `TRACEGRAD_DISABLE_DISK_CACHE=1`): the module is written as a real file `tg_<hash>.py` and its
  function compiled with `cache=True`, so a new process loads the machine code instead of
  compiling (Numba cannot cache functions created by `exec` of a string without a file).

Files are written atomically (a temporary file, then `os.replace`), so concurrent writers of
the same module never leave a partial file. Processes that compile the same function at the same
time (the ranks of a distributed job, pytest-xdist workers) take turns through a lock file
(`compiling`): the first compiles and writes Numba's cache, the others then load it.
The directory is created private to the user. Before a file is used its bytes are hashed: a
tampered, truncated or foreign file is rewritten, never executed, and what is executed is
exactly the bytes that were checked.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

_memory: dict[str, Any] = {}
_lock = threading.Lock()


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:40]


def cache_dir() -> Path | None:
    """The disk cache directory (created private to the user), or None when disabled."""
    if os.environ.get("TRACEGRAD_DISABLE_DISK_CACHE") == "1":
        return None
    root = Path(os.environ.get("TRACEGRAD_CACHE_DIR", "~/.cache/tracegrad")).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if root.stat().st_uid == os.getuid():
            os.chmod(root, 0o700)
    except OSError:
        return None  # unwritable: fall back to the memory cache only
    return root


def disk_enabled() -> bool:
    return cache_dir() is not None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(source: str, name: str = "segment") -> Any:
    """The compiled (or compilable: Numba compiles on first call) function `name` defined by
    `source`, from memory, from disk, or made now."""
    key = source_hash(source)
    with _lock:
        fn = _memory.get(key)
        if fn is not None:
            return fn
        directory = cache_dir()
        if directory is None:
            namespace: dict[str, Any] = {}
            exec(compile(source, f"<tracegrad kernel {key}>", "exec"), namespace)
            fn = namespace[name]
        else:
            fn = _load_file(directory, key, source, name)
        _memory[key] = fn
        return fn


def _load_file(directory: Path, key: str, source: str, name: str) -> Any:
    path = directory / f"tg_{key}.py"
    data = source.encode()
    try:
        on_disk = path.read_bytes()
    except OSError:
        on_disk = None
    if on_disk is None or hashlib.sha256(on_disk).hexdigest()[:40] != key:
        # missing, or not what its name promises (tampered, truncated, foreign): rewrite it
        _write_atomic(path, data)
    # execute exactly the bytes we checked, with the file's path as their filename, so Numba's
    # cache=True can locate (and later find) its cache next to the file
    module_name = f"tracegrad_kernels.tg_{key}"
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    exec(compile(data, str(path), "exec"), module.__dict__)
    return getattr(module, name)


def load_cached(fn: Any, signature: tuple) -> bool:
    """Load `fn`'s machine code for `signature` from Numba's disk cache if it is there (what
    `Dispatcher.compile` does on a cache hit, without compiling on a miss); whether it was."""
    try:
        from numba.core.compiler_lock import global_compiler_lock

        with global_compiler_lock:
            if signature in fn.overloads:
                return True
            cres = fn._cache.load_overload(signature, fn.targetctx)
            if cres is None:
                return False
            fn._cache_hits[signature] += 1
            if not cres.objectmode:
                fn.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
            fn.add_overload(cres)
            return True
    except Exception:  # noqa: BLE001 - Numba's internals moved: the worker (or a call) compiles
        return False


class compiling:
    """`with compiling(source):` around the first call of a cached function (when Numba compiles
    it, or loads it from its cache): an exclusive lock on `tg_<hash>.lock` beside the module, so
    that one process compiles while the others wait and then load the machine code it wrote.
    No lock without a disk cache or where `fcntl` is missing (Windows)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.fd: int | None = None

    def __enter__(self) -> compiling:
        directory = cache_dir()
        if directory is None:
            return self
        try:
            import fcntl

            fd = os.open(
                directory / f"tg_{source_hash(self.source)}.lock", os.O_CREAT | os.O_RDWR, 0o600
            )
        except (ImportError, OSError):
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            return self
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def clear_memory() -> None:
    """Forget compiled functions held in memory (tests use this to exercise the disk level)."""
    with _lock:
        _memory.clear()
