"""Train a small CNN on scikit-learn's bundled 8x8 digits (no download), eagerly and with
`tg.jit`, and report test accuracy and the measured jit-vs-eager speedup.

    python examples/train_digits.py                  # both modes, 8 epochs each
    python examples/train_digits.py --mode jit --epochs 15
    python examples/train_digits.py --device cuda    # on an NVIDIA GPU (pip install -e '.[cuda]')
    mpiexec -n 2 python examples/train_digits.py --ddp   # data parallel over 2 processes (MPI)

With --ddp (under mpiexec; pip install -e '.[distributed]') every rank takes its share of each
batch of --batch-size samples and DistributedDataParallel averages the gradients, so the ranks
train the single process's model (BatchNorm's batch statistics are per share, as in PyTorch).

Needs the `examples` extra: pip install -e '.[examples]' (scikit-learn, tqdm).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn

try:
    from sklearn.datasets import load_digits
    from tqdm import tqdm
except ImportError as e:  # pragma: no cover - a clear message instead of a traceback
    raise SystemExit(
        f"train_digits needs scikit-learn and tqdm ({e.name} is missing): "
        "pip install -e '.[examples]'"
    ) from None


def data(seed: int = 0) -> tuple:
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) in [0, 1], 20% held out."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    return x[train], y[train], x[test], y[test]


def make_model(seed: int = 0) -> nn.Module:
    tg.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4x4
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def batches(
    x: np.ndarray,
    y: np.ndarray,
    size: int,
    rng: np.random.Generator,
    device: str = "cpu",
    share: tuple[int, int] = (0, 1),
) -> list:
    """Shuffled batches of `size`; with `share=(rank, world)` this rank's part of each."""
    order = rng.permutation(len(x))
    rank, world = share
    out = []
    for i in range(0, len(x), size):
        idx = order[i : i + size]
        idx = idx[rank * len(idx) // world : (rank + 1) * len(idx) // world]
        out.append((tg.tensor(x[idx], device=device), tg.tensor(y[idx], device=device)))
    return out


def accuracy(
    model: nn.Module, predict: object, x: np.ndarray, y: np.ndarray, device: str = "cpu"
) -> float:
    model.eval()
    with tg.no_grad():
        logits = predict(tg.tensor(x, device=device))
    model.train()
    return float((logits.argmax(1).cpu().numpy() == y).mean())


def train(
    mode: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str = "cpu",
    limit: int | None = None,
    ddp: bool = False,
) -> dict:
    x_train, y_train, x_test, y_test = data(seed)
    if limit is not None:  # a smaller run (tests)
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[: limit // 4], y_test[: limit // 4]
    model = make_model(seed).to(device)  # before the optimizer: its state follows the params
    share, trained = (0, 1), model
    if ddp:  # every rank holds the model; gradients are averaged across ranks in backward
        share = (tg.distributed.get_rank(), tg.distributed.get_world_size())
        trained = nn.parallel.DistributedDataParallel(model)
    optimizer = tg.optim.Adam(trained.parameters(), lr=lr)

    def step(x: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(trained(x), y)
        loss.backward()
        optimizer.step()
        return loss

    predict = model
    if mode == "jit" and share[0] == 0:
        print(
            "  (jit: the first call runs eagerly (Adam creates its state), the second traces "
            "the step and hands it to a background compile worker; calls run eagerly until "
            "the compiled step is ready: tens of seconds the first time (20-60 s here), well "
            "under 1 s from the disk cache after that)"
        )
    if mode == "jit":
        step = tg.jit(step, device=device)
        predict = tg.jit(model, device=device)  # under no_grad in eval mode: inference graph
    rng = np.random.default_rng(seed)
    epoch_times = []
    for epoch in range(1, epochs + 1):
        bar = tqdm(
            batches(x_train, y_train, batch_size, rng, device, share),
            desc=f"{mode:>5} epoch {epoch:2d}",
            unit="batch",
            leave=True,
            ncols=88,
            disable=share[0] != 0,  # one progress bar per job
        )
        start = time.perf_counter()
        total = 0.0
        for n, (x, y) in enumerate(bar, 1):
            total += step(x, y).item()
            bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)
        epoch_times.append(time.perf_counter() - start)
        if mode == "jit" and epoch == 1 and epochs > 1:
            # the later epochs time the compiled step: wait for the worker if it is still busy
            eager = step.stats["calls_while_compiling"]
            start = time.perf_counter()
            step.wait()
            if share[0] == 0:
                print(
                    f"  (jit: {eager} calls ran eagerly while the worker compiled; waited "
                    f"{time.perf_counter() - start:.1f} s more for it before epoch 2)"
                )
    result = {
        "mode": mode,
        "accuracy": accuracy(model, predict, x_test, y_test, device),
        "epoch_times": epoch_times,
        # samples this rank processed per second, after the first (compiling) epoch
        "samples_per_s": len(x_train) / share[1] / float(np.median(epoch_times[1:] or epoch_times)),
    }
    if mode == "jit":
        result["stats"] = dict(step.stats)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["both", "eager", "jit"], default="both")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--ddp", action="store_true", help="data parallel over the ranks of mpiexec -n N"
    )
    args = parser.parse_args()
    modes = ["eager", "jit"] if args.mode == "both" else [args.mode]
    rank, world = 0, 1
    if args.ddp:
        tg.distributed.init_process_group("mpi")
        rank, world = tg.distributed.get_rank(), tg.distributed.get_world_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    say(
        f"tracegrad: a small CNN on scikit-learn's 8x8 digits ({', '.join(modes)}; "
        f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr}, on {args.device}"
        + (f"; data parallel over {world} ranks)" if args.ddp else ")")
    )
    results = {
        m: train(m, args.epochs, args.batch_size, args.lr, args.seed, args.device, ddp=args.ddp)
        for m in modes
    }
    for r in results.values():
        times = r["epoch_times"]
        steady = np.median(times[1:]) if len(times) > 1 else times[0]
        say(
            f"{r['mode']:>5}: test accuracy {r['accuracy']:.2%}; first epoch {times[0]:.2f} s, "
            f"then {steady:.3f} s per epoch (median)"
        )
        if args.ddp:  # each rank's throughput, printed by each rank
            print(f"{r['mode']:>5} rank {rank}: {r['samples_per_s']:.0f} samples/s", flush=True)
        r["steady"] = steady
    if "jit" in results:
        stats = results["jit"]["stats"]
        say(
            f"  jit: {stats['traces']} traces, {stats['compiles']} kernels compiled, "
            f"{stats['disk_hits']} loaded from the disk cache, {stats['eager_calls']} eager "
            "call (the first: Adam creates its state)"
        )
    if len(results) == 2:
        speedup = results["eager"]["steady"] / results["jit"]["steady"]
        say(f"jit vs eager: {speedup:.2f}x faster per epoch after the first (compile) epoch")


if __name__ == "__main__":
    main()
