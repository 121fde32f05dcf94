"""The default process group: MPI's COMM_WORLD (duplicated), set up by `init_process_group`.

mpi4py is imported only here and only when a group is made: `import tracegrad` never starts
MPI. A script started without `mpiexec` is a world of one process (MPI's singleton start).
"""

from __future__ import annotations

import os
from typing import Any

_BACKENDS = ("mpi", "gloo", "nccl")


class _Group:
    comm: Any = None  # an MPI communicator: user collectives
    ddp_comm: Any = None  # a second one for DistributedDataParallel's communication thread
    mpi: Any = None  # the mpi4py.MPI module
    # whether MPI allows calls from several threads at once (MPI_THREAD_MULTIPLE): only then do
    # DDP's all-reduces run on the communication thread; else on the calling thread, blocking
    threaded: bool = False


group = _Group()


def is_available() -> bool:
    """True when mpi4py can be imported (`pip install tracegrad[distributed]`)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def _import_mpi() -> Any:
    try:
        import mpi4py

        mpi4py.rc.thread_level = "multiple"  # DDP's communication thread beside the main one
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            "tracegrad.distributed needs mpi4py and an MPI library: pip install "
            "'tracegrad[distributed]' (mpi4py and the mpich wheel, which puts mpiexec in the "
            "environment's bin/)"
        ) from e
    return MPI


def init_process_group(
    backend: str | None = "mpi",
    init_method: str | None = None,
    timeout: Any = None,
    world_size: int = -1,
    rank: int = -1,
    store: Any = None,
    group_name: str = "",
    pg_options: Any = None,
    device_id: Any = None,
) -> None:
    """Join the job's processes (all of `mpiexec -n N`) into the default group.

    backend: "mpi"; "gloo" and "nccl" (PyTorch's CPU and GPU backends) are accepted and also run
    over MPI (CUDA tensors through host copies). init_method/store: MPI's launcher already
    connected the processes, so only None or "env://" are accepted. world_size/rank, when given,
    must be what mpiexec made.
    """
    if backend is None:
        backend = "mpi"
    if str(backend).split(":")[0].lower() not in _BACKENDS:
        raise ValueError(
            f"init_process_group: backend {backend!r} is not available; tracegrad runs "
            "collectives over MPI: use backend='mpi' and launch with mpiexec -n N python "
            "script.py"
        )
    if init_method not in (None, "env://") or store is not None:
        raise ValueError(
            "init_process_group: init_method/store are not used: mpiexec connects the "
            f"processes (got init_method={init_method!r}). Launch with mpiexec -n N"
        )
    if group.comm is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    mpi = _import_mpi()
    world = mpi.COMM_WORLD
    for name, given, actual in (("world_size", world_size, world.size), ("rank", rank, world.rank)):
        if given not in (-1, None) and int(given) != actual:
            raise ValueError(
                f"init_process_group: {name}={given} but mpiexec started this process as "
                f"{name} {actual}; leave {name} out (MPI decides it)"
            )
    env_size = os.environ.get("WORLD_SIZE")
    if env_size is not None and env_size.isdigit() and int(env_size) != world.size:
        raise RuntimeError(
            f"init_process_group: WORLD_SIZE={env_size} in the environment (torchrun's) but "
            f"MPI's world has {world.size} processes; launch with mpiexec -n {env_size} instead "
            "of torchrun"
        )
    group.mpi = mpi
    group.comm = world.Dup()
    group.ddp_comm = world.Dup()
    group.threaded = mpi.Query_thread() == mpi.THREAD_MULTIPLE
    if world.size > 1:
        _abort_on_uncaught_exceptions()
        # tg.jit blocks on its first call (block=None): otherwise each rank would switch from
        # the eager tier to the compiled one at its own call, and ranks applying the same
        # averaged gradients through different code would hold parameters that differ in the
        # last bit (runtime/compile_worker.py)
        from ..runtime import compile_worker

        compile_worker.block_by_default("distributed", True)


def _abort_on_uncaught_exceptions() -> None:
    """An exception that ends one rank's script ends the whole job (MPI_Abort, exit code 1)
    after its traceback is printed, as `python -m mpi4py script.py` does: the other ranks would
    otherwise wait forever in their next collective."""
    import sys
    import threading
    import time
    import traceback

    previous = sys.excepthook

    def report(kind: Any, value: Any, tb: Any) -> None:
        # the traceback in one write, then a moment for mpiexec to forward it: an abort right
        # after a line-by-line print lost all but its first line (seen in CI)
        text = "".join(traceback.format_exception(kind, value, tb))
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - stderr closed: abort anyway
            pass
        time.sleep(0.2)

    def hook(kind: Any, value: Any, tb: Any) -> None:
        if previous is sys.__excepthook__:
            report(kind, value, tb)
        else:  # the user's own hook first
            previous(kind, value, tb)
        group.mpi.COMM_WORLD.Abort(1)

    def thread_hook(args: Any) -> None:
        report(args.exc_type, args.exc_value, args.exc_traceback)
        group.mpi.COMM_WORLD.Abort(1)

    sys.excepthook = hook
    threading.excepthook = thread_hook


def is_initialized() -> bool:
    return group.comm is not None


def _require(what: str) -> Any:
    if group.comm is None:
        raise RuntimeError(
            f"{what}: Default process group has not been initialized, please make sure to call "
            "init_process_group."
        )
    return group.comm


def get_rank(group_: Any = None) -> int:
    return _require("get_rank").rank


def get_world_size(group_: Any = None) -> int:
    return _require("get_world_size").size


def destroy_process_group(group_: Any = None) -> None:
    """Leave the group (MPI itself is finalized at exit by mpi4py)."""
    _shutdown_worker()
    if group.comm is not None:
        for comm in (group.comm, group.ddp_comm):
            comm.Free()
    group.comm = group.ddp_comm = None
    from ..runtime import compile_worker

    compile_worker.block_by_default("distributed", False)


# ------------------------------------------------------------------------------------------
# the communication thread (DistributedDataParallel's all-reduces overlap the backward there)

_worker: list = []


def submit(fn: Any, *args: Any) -> Any:
    """Run `fn(*args)` on the one communication thread (in submission order); a Future. mpi4py
    releases the GIL inside MPI calls, so the main thread's backward runs meanwhile."""
    if not _worker:
        from concurrent.futures import ThreadPoolExecutor

        _worker.append(ThreadPoolExecutor(1, thread_name_prefix="tracegrad-comm"))
    return _worker[0].submit(fn, *args)


def _shutdown_worker() -> None:
    if _worker:
        _worker.pop().shutdown(wait=True)
