"""A nanoGPT-style training step: tracegrad eager and jitted vs PyTorch eager and torch.compile.

The model is examples/train_charlm.py's (2 blocks, n_embd 64, 4 heads, block 32, batch 16,
vocab 65; AdamW, gradient clipping), written ONCE below against a library argument: the same
source builds the tracegrad model and the PyTorch one ("change the import line"). Every system
starts from the same weights and data; first losses are compared before anything is timed.

Run: python -m benchmarks.gpt [--repeats 20] [--no-compile]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

import tracegrad as tg

from .timing import time_blocks

VOCAB, BLOCK, BATCH, N_LAYER, N_EMBD, N_HEAD = 65, 32, 16, 2, 64, 4


def build_gpt(lib: Any) -> Any:
    """The GPT class for `lib` (tracegrad or torch): the code is the same for both."""
    nn, F = lib.nn, lib.nn.functional

    class CausalSelfAttention(nn.Module):
        def __init__(self, n_embd: int, n_head: int) -> None:
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.n_head, self.n_embd = n_head, n_embd

        def forward(self, x: Any) -> Any:
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self, n_embd: int, n_head: int) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention(n_embd, n_head)
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = nn.Sequential(
                nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
            )

        def forward(self, x: Any) -> Any:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(VOCAB, N_EMBD)
            self.wpe = nn.Embedding(BLOCK, N_EMBD)
            self.h = nn.ModuleList([Block(N_EMBD, N_HEAD) for _ in range(N_LAYER)])
            self.ln_f = nn.LayerNorm(N_EMBD)
            self.lm_head = nn.Linear(N_EMBD, VOCAB, bias=False)

        def forward(self, idx: Any, targets: Any) -> Any:
            B, T = idx.size()
            x = self.wte(idx) + self.wpe(lib.arange(0, T, dtype=lib.long))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return GPT


def make_step(lib: Any, model: Any, compile_model: bool = False) -> Callable:
    """The training step; `compile_model`: the loop PyTorch users write around
    `torch.compile(model)` (`tg.compile(model)`: a compiled forward and backward, the rest
    eager)."""
    opt = lib.optim.AdamW(model.parameters(), lr=3e-3)
    run = lib.compile(model) if compile_model else model

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        loss = run(x, y)
        loss.backward()
        lib.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, VOCAB, (BATCH, BLOCK)).astype(np.int64),
        rng.integers(0, VOCAB, (BATCH, BLOCK)).astype(np.int64),
    )


def tracegrad_model() -> Any:
    tg.manual_seed(0)
    return build_gpt(tg)()


def torch_model(state: dict) -> Any:
    import torch

    model = build_gpt(torch)()
    model.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in state.items()})
    return model


def systems(peers: bool = True, torch_compile: bool = True) -> dict[str, Callable[[], float]]:
    """{name: run one training step, return its loss}; each starts from the same weights."""
    xn, yn = data()
    base = tracegrad_model()
    out: dict[str, Callable[[], float]] = {}
    for label, jitted in (
        ("tracegrad jit", True),
        ("tracegrad eager", False),
        ("tracegrad jit(model)", None),
    ):
        model = build_gpt(tg)()
        model.load_state_dict(base.state_dict())
        step = make_step(tg, model, compile_model=jitted is None)
        if jitted:
            step = tg.jit(step)
        x, y = tg.tensor(xn), tg.tensor(yn)
        out[label] = lambda step=step, x=x, y=y: step(x, y).item()
    if peers:
        try:
            import torch
        except ImportError:
            return out
        xt, yt = torch.from_numpy(xn), torch.from_numpy(yn)
        eager = make_step(torch, torch_model(base.state_dict()))
        out["pytorch eager"] = lambda: eager(xt, yt).item()
        if torch_compile:
            compiled = torch.compile(make_step(torch, torch_model(base.state_dict())))
            out["torch.compile"] = lambda: compiled(xt, yt).item()
            cmodel = make_step(torch, torch_model(base.state_dict()), compile_model=True)
            out["torch.compile(model)"] = lambda: cmodel(xt, yt).item()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    args = p.parse_args(argv)
    runs = systems(torch_compile=not args.no_compile)
    firsts = {name: run() for name, run in runs.items()}  # compiles; same weights, same data
    ref = firsts["tracegrad eager"]
    for name, loss in firsts.items():
        print(f"{name:22s} first loss {loss:.6f}  (diff to eager {abs(loss - ref):.1e})")
    times = time_blocks(runs, args.repeats)
    jit = float(np.median(times["tracegrad jit"]))
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"{name:22s} {med * 1e3:8.2f} ms  ({med / jit:.2f}x tracegrad jit)")


if __name__ == "__main__":
    main()
