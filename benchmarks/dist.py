"""Data-parallel training over MPI (issue #20): 2 ranks x 1 thread against 1 process x 2
threads, the same global batch, jitted SGD-momentum training steps.

For each model (the MLP 784-512-512-10 at global batch 256; ResNet-18 at 16x3x64x64):

* one process, 2 threads (numba and BLAS), the whole batch: samples/s;
* `mpiexec -n 2`, 1 thread per rank, each rank half the batch, DistributedDataParallel:
  samples/s of the job, the step with communication and the same step inside `no_sync()`
  (no all-reduce), and the all-reduce of all gradients alone (one Allreduce of that many bytes):
  exposed communication = ddp - no_sync; hidden by the overlap = 1 - exposed / alone.

Run: python -m benchmarks.dist [--only mlp|resnet] [--steps 20]   (starts mpiexec itself)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from .training import _tg_step

MODELS = {"mlp": (256, (784,), 10), "resnet": (16, (3, 64, 64), 1000)}


def _model(name: str):  # noqa: ANN202
    import tracegrad as tg
    from tracegrad import nn

    tg.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
    return tg.models.resnet18(num_classes=1000)


def _median_step(step, x, y, steps: int, warmup: int = 3) -> float:  # noqa: ANN001
    for _ in range(warmup):
        step(x, y).item()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y).item()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def one_process(name: str, steps: int) -> dict:
    import tracegrad as tg

    batch, shape, classes = MODELS[name]
    step = tg.jit(_tg_step(_model(name), 0.01))  # benchmarks/training.py's SGD-momentum step

    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = tg.tensor(rng.integers(0, classes, batch))
    t = _median_step(step, x, y, steps)
    return {"step_s": t, "samples_per_s": batch / t}


def worker(name: str, steps: int) -> None:
    """One rank of `mpiexec -n N python -m benchmarks.dist --worker NAME`."""
    import tracegrad as tg
    import tracegrad.distributed as dist
    from tracegrad.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    batch, shape, classes = MODELS[name]
    ddp = DDP(_model(name))
    body = _tg_step(ddp, 0.01)
    synced = tg.jit(body)
    local = tg.jit(body)  # traced inside no_sync: the same step without the all-reduces

    def unsynced(x, y):  # noqa: ANN001, ANN202
        with ddp.no_sync():
            return local(x, y)

    rng = np.random.default_rng(rank)
    x = tg.tensor(rng.standard_normal((batch // size,) + shape).astype(np.float32))
    y = tg.tensor(rng.integers(0, classes, batch // size))
    dist.barrier()
    t_sync = _median_step(synced, x, y, steps)
    dist.barrier()
    t_local = _median_step(unsynced, x, y, steps)
    nbytes = sum(p.numel() * 4 for p in ddp.parameters())
    buf = np.ones(nbytes // 4, dtype=np.float32)
    comm = dist.process_group.group.comm
    times = []
    for _ in range(steps):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(dist.process_group.group.mpi.IN_PLACE, buf)
        times.append(time.perf_counter() - t0)
    t_allreduce = float(np.median(times))
    if rank == 0:
        print(
            "RESULT "
            + json.dumps(
                {
                    "ranks": size,
                    "step_s": t_sync,
                    "no_sync_step_s": t_local,
                    "allreduce_s": t_allreduce,
                    "gradient_mb": nbytes / 1e6,
                    "buckets": len(ddp._buckets),
                    "samples_per_s": batch / t_sync,
                }
            ),
            flush=True,
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps)
        return {}
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    out = {}
    for name in [args.only] if args.only else list(MODELS):
        threads = str(args.ranks)
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        single = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import json, benchmarks.dist as d; print('RESULT ' + "
                f"json.dumps(d.one_process({name!r}, {args.steps})))",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        one = json.loads(single.stdout.split("RESULT ", 1)[1])
        env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        job = subprocess.run(
            [
                str(mpiexec),
                "-n",
                str(args.ranks),
                sys.executable,
                "-m",
                "benchmarks.dist",
                "--worker",
                name,
                "--steps",
                str(args.steps),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if job.returncode != 0:
            raise SystemExit(job.stdout[-2000:] + job.stderr[-4000:])
        many = json.loads(job.stdout.split("RESULT ", 1)[1])
        exposed = max(0.0, many["step_s"] - many["no_sync_step_s"])
        out[name] = {"one_process": one, "ddp": many, "exposed_s": exposed}
        batch = MODELS[name][0]
        print(
            f"{name} (global batch {batch}; gradients {many['gradient_mb']:.1f} MB, "
            f"{many['buckets']} buckets)"
        )
        print(
            f"  1 process x {threads} threads : {one['samples_per_s']:8.1f} samples/s "
            f"({one['step_s'] * 1e3:.2f} ms/step)"
        )
        print(
            f"  {args.ranks} ranks x 1 thread     : {many['samples_per_s']:8.1f} samples/s "
            f"({many['step_s'] * 1e3:.2f} ms/step; "
            f"{many['samples_per_s'] / one['samples_per_s']:.2f}x)"
        )
        print(
            f"  same step without the all-reduce (no_sync): {many['no_sync_step_s'] * 1e3:.2f} ms"
        )
        print(
            f"  all-reduce of all gradients alone: {many['allreduce_s'] * 1e3:.2f} ms; exposed "
            f"in the step: {exposed * 1e3:.2f} ms ({exposed / many['step_s']:.0%} of it); hidden "
            f"by the overlap: {1 - min(1.0, exposed / many['allreduce_s']):.0%}"
        )
    return out


if __name__ == "__main__":
    main()
