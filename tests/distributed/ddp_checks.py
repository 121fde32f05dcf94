"""Run by tests/distributed/test_distributed.py under `mpiexec -n 2`: every rank runs the same
checks and rank 0 prints one JSON line of results (the test asserts on them).

Each training check trains a small model with DistributedDataParallel, every rank on its half of
the batch, and the same model in one process on the whole batch; the parameters must agree to
float64 rounding on every rank (gathered and compared across ranks too)."""

from __future__ import annotations

import json
import sys

import numpy as np

import tracegrad as tg
import tracegrad.distributed as dist
from tracegrad import nn
from tracegrad.nn import functional as F
from tracegrad.nn.parallel import DistributedDataParallel as DDP
from tracegrad.utils.data.distributed import DistributedSampler

dist.init_process_group("mpi")
rank, size = dist.get_rank(), dist.get_world_size()
results: dict = {}


def mlp(seed: int) -> nn.Module:
    tg.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)
    ).double()


def cnn(seed: int) -> nn.Module:
    tg.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 4),
    ).double()


rng = np.random.default_rng(0)
DATA = {
    "mlp": (tg.tensor(rng.standard_normal((4, 8, 6))), tg.tensor(rng.integers(0, 4, (4, 8)))),
    "cnn": (tg.tensor(rng.standard_normal((4, 8, 2, 5, 5))), tg.tensor(rng.integers(0, 4, (4, 8)))),
}


def optimizer(kind: str, params) -> tg.optim.Optimizer:
    if kind == "sgd":
        return tg.optim.SGD(params, lr=0.1, momentum=0.9)
    return tg.optim.Adam(params, lr=0.01)


def flat_params(model: nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in model.parameters()])


def halves(step_x: tg.Tensor) -> list:
    return [slice(r * 8 // size, (r + 1) * 8 // size) for r in range(size)]


def reference(arch: str, opt_kind: str, accumulate: bool = False) -> np.ndarray:
    """One process: the mean of the ranks' losses, each on its share (BatchNorm's batch
    statistics are per share, as under DDP)."""
    model = (mlp if arch == "mlp" else cnn)(100)
    opt = optimizer(opt_kind, model.parameters())
    X, Y = DATA[arch]
    for step in range(len(X)):
        opt.zero_grad()
        for share in halves(X[step]):
            x, y = X[step][share], Y[step][share]
            if accumulate:  # each share in two micro-batches
                for part in (slice(0, None, 2), slice(1, None, 2)):
                    (F.cross_entropy(model(x[part]), y[part]) / (2 * size)).backward()
            else:
                (F.cross_entropy(model(x), y) / size).backward()
        opt.step()
    return flat_params(model)


def distributed(arch: str, opt_kind: str, form: str) -> np.ndarray:
    model = (mlp if arch == "mlp" else cnn)(100 + rank)  # DDP copies rank 0's parameters
    device = "cuda" if form == "cuda" else "cpu"
    model = model.to(device)
    inner = tg.jit(model) if form == "ddp_of_jit_model" else model
    ddp = DDP(inner, bucket_cap_mb=0.001)  # several buckets
    opt = optimizer(opt_kind, ddp.parameters())
    X, Y = DATA[arch]
    mine = slice(rank * 8 // size, (rank + 1) * 8 // size)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        return loss

    run = tg.jit(step) if form == "jit_step" else step
    if form == "jit_step_mixed_tiers":
        # rank 0 compiles on its second call; rank 1 runs its first three calls eagerly (the
        # worker's job held back) while rank 0 runs compiled: the eager and the compiled DDP
        # step must issue the same all-reduces in the same order
        run = tg.jit(step, block=rank == 0)

    def half_backward(x, y):
        (F.cross_entropy(ddp(x), y) / 2).backward()

    # one jitted function called inside no_sync and outside: the guard on DDP's sync flag
    # makes it two programs (without and with the all-reduces)
    accumulate = tg.jit(half_backward) if form == "jit_no_sync" else half_backward
    if form in ("no_sync", "jit_no_sync"):
        for s in range(len(X)):
            opt.zero_grad()
            x, y = X[s][mine], Y[s][mine]
            with ddp.no_sync():
                accumulate(x[0::2], y[0::2])
            accumulate(x[1::2], y[1::2])
            opt.step()
        if form == "jit_no_sync":
            results["stats_jit_no_sync"] = dict(accumulate.stats)
    elif form == "jit_step_mixed_tiers":
        import os
        import tempfile

        from tracegrad.runtime import compile_cache, compile_worker

        # this program was compiled above (jit_step): start from empty caches
        before = os.environ["TRACEGRAD_CACHE_DIR"]
        os.environ["TRACEGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"tracegrad-mixed-{rank}-")
        compile_cache.clear_memory()
        held = compile_worker.hold() if rank != 0 else None
        if held is not None:
            held.__enter__()
        for s in range(len(X)):
            if s == 3 and held is not None:
                held.__exit__(None, None, None)
                run.wait()
            run(X[s][mine], Y[s][mine])
        counts = tg.tensor([run.stats["calls_while_compiling"]])
        both = [tg.zeros_like(counts) for _ in range(size)]
        dist.all_gather(both, counts)
        results["mixed_tiers_calls_while_compiling"] = [int(b.item()) for b in both]
        # by default a distributed job's tg.jit blocks (every rank switches at the same call)
        os.environ["TRACEGRAD_JIT_BLOCK"] = "0"
        compile_cache.clear_memory()
        default = tg.jit(lambda a: (a * 3).sin().sum())
        default(tg.ones(3, dtype=tg.float64))
        results["distributed_jit_blocks_by_default"] = [
            default.stats["calls_while_compiling"],
            default.stats["compiles"] + default.stats["disk_hits"],
        ]
        os.environ["TRACEGRAD_JIT_BLOCK"] = "1"
        os.environ["TRACEGRAD_CACHE_DIR"] = before
    else:
        for s in range(len(X)):
            run(X[s][mine].to(device), Y[s][mine].to(device))
    if form == "jit_step":
        results[f"stats_{arch}_{opt_kind}"] = dict(run.stats)
        # each function compiled once in the whole job: the ranks take turns through the disk
        # cache's lock file, so the second one loads what the first compiled
        counts = tg.tensor([run.stats["compiles"], run.stats["disk_hits"]])
        both = [tg.zeros_like(counts) for _ in range(size)]
        dist.all_gather(both, counts)
        results[f"compiles_{arch}_{opt_kind}"] = [b.numpy().tolist() for b in both]
        # where the program runs the all-reduces: each start right after its bucket's
        # gradients, so backward matmuls still follow the first one; every wait after the
        # last start
        entry = run._entry_for((X[0][mine], Y[0][mine]), {})
        names = [getattr(getattr(st, "eqn", None), "op", None) for st in entry.executable.steps]
        names = [op.name if op is not None else "segment" for op in names]
        starts = [i for i, n in enumerate(names) if n == "all_reduce_start"]
        waits = [i for i, n in enumerate(names) if n == "all_reduce_wait"]
        results[f"program_{arch}_{opt_kind}"] = {
            "buckets": len(ddp._buckets),
            "starts": len(starts),
            "waits": len(waits),
            "matmuls_after_first_start": names[starts[0] :].count("matmul") if starts else 0,
            "waits_after_starts": bool(starts and waits and max(starts) < min(waits)),
        }
    return flat_params(model)


def compare(name: str, got: np.ndarray, want: np.ndarray) -> None:
    mine = tg.tensor(got)
    gathered = [tg.zeros_like(mine) for _ in range(size)]
    dist.all_gather(gathered, mine)
    everyone = [g.numpy() for g in gathered]
    results[name] = {
        "vs_one_process": float(np.max(np.abs(got - want))),
        "across_ranks": float(max(np.max(np.abs(e - everyone[0])) for e in everyone)),
        "moved": float(np.max(np.abs(want - flat_params((mlp if "mlp" in name else cnn)(100))))),
    }


# ---- collectives against numpy
t = tg.tensor(np.arange(6.0).reshape(2, 3) * (rank + 1))
dist.all_reduce(t)
results["all_reduce_sum"] = t.numpy().tolist()
t = tg.tensor(np.arange(6.0) * (rank + 1))
dist.all_reduce(t, op=dist.ReduceOp.MAX)
results["all_reduce_max"] = t.numpy().tolist()
t = tg.tensor(np.full(3, float(rank)))
dist.all_reduce(t, op=dist.ReduceOp.AVG)
results["all_reduce_avg"] = t.numpy().tolist()
t = tg.tensor(np.full(2, rank + 10, dtype=np.int64))
dist.broadcast(t, src=1)
results["broadcast_from_1"] = t.numpy().tolist()
out = [tg.zeros(2) for _ in range(size)]
dist.all_gather(out, tg.full((2,), float(rank)))
results["all_gather"] = [o.numpy().tolist() for o in out]
f = tg.jit(lambda x: (dist.all_reduce(x), x * 2)[1])
results["jit_all_reduce"] = f(tg.ones(3)).numpy().tolist() + f(tg.ones(3) * 2).numpy().tolist()
dist.barrier()

# ---- DistributedSampler
s = DistributedSampler(list(range(11)), shuffle=True, seed=3)
s.set_epoch(2)
results["sampler"] = list(s)
results["sampler_len"] = len(s)

# ---- training: DDP == one process on the whole batch
for arch, opt_kind, form in [
    ("mlp", "sgd", "eager"),
    ("mlp", "adam", "eager"),
    ("cnn", "sgd", "eager"),
    ("mlp", "sgd", "no_sync"),
    ("mlp", "sgd", "jit_no_sync"),
    ("mlp", "sgd", "jit_step"),
    ("mlp", "adam", "jit_step"),
    ("cnn", "adam", "jit_step"),
    ("mlp", "adam", "ddp_of_jit_model"),
    ("mlp", "sgd", "jit_step_mixed_tiers"),
] + ([("mlp", "sgd", "cuda")] if tg.cuda.is_available() else []):
    want = reference(arch, opt_kind, accumulate=form in ("no_sync", "jit_no_sync"))
    compare(f"{arch}_{opt_kind}_{form}", distributed(arch, opt_kind, form), want)


# ---- a backward that raises half-way (after some buckets started) leaves nothing stale: the
# next steps average as usual
class Boom(tg.autograd.Function):
    armed = True

    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        if Boom.armed:
            raise ValueError("boom")
        return g


class WithBoom(nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.net = mlp(seed)

    def forward(self, x):
        a, b, c, d, e = self.net
        return e(d(c(Boom.apply(b(a(x))))))


boomed = WithBoom(100 + rank)
ddp = DDP(boomed, bucket_cap_mb=0.0001)
opt = tg.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
X, Y = DATA["mlp"]
mine = slice(rank * 8 // size, (rank + 1) * 8 // size)
try:
    F.cross_entropy(ddp(X[0][mine]), Y[0][mine]).backward()
    results["boom_raised"] = False
except ValueError:
    results["boom_raised"] = True
Boom.armed = False
for s_ in range(len(X)):
    opt.zero_grad()
    F.cross_entropy(ddp(X[s_][mine]), Y[s_][mine]).backward()
    opt.step()
compare("mlp_sgd_after_a_failed_backward", flat_params(boomed.net), reference("mlp", "sgd"))


# ---- an unused parameter is an error naming it (and find_unused_parameters=True allows it)
class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x)


m = DDP(TwoHeads())
try:
    m(tg.ones(1, 3)).sum().backward()
    results["unused_error"] = ""
except RuntimeError as e:
    results["unused_error"] = str(e)
m = DDP(TwoHeads(), find_unused_parameters=True)
m(tg.ones(1, 3)).sum().backward()
results["unused_allowed"] = [m.module.a.weight.grad is not None, m.module.b.weight.grad is not None]

# ---- different models on different ranks are refused on every rank
try:
    DDP(nn.Linear(3, 2 + rank))
    results["mismatch_error"] = ""
except RuntimeError as e:
    results["mismatch_error"] = str(e)

if rank == 0:
    print("RESULTS " + json.dumps(results), flush=True)
dist.destroy_process_group()
sys.exit(0)
