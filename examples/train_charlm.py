"""A small character-level GPT (nanoGPT's model, written as PyTorch users write it) trained on
text every Python install ships: the standard library's own sources. Eager by default; with
`--mode jit` the whole training step is compiled: the steps run eagerly while a background
worker compiles it (about a minute the first time; loaded from the disk cache after that),
then compiled.

    python examples/train_charlm.py                    # eager, 200 steps, then sampled text
    python examples/train_charlm.py --mode jit --steps 300
    python examples/train_charlm.py --mode both        # both, with the measured speedup

Only the import lines differ from the PyTorch version: `tg.utils.data`, `nn.ModuleDict`,
`F.scaled_dot_product_attention`, `nn.utils.clip_grad_norm_`, `tg.multinomial`, `topk`.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn


def corpus(max_chars: int = 400_000) -> str:
    """Text of a few standard-library modules (ASCII only)."""
    import argparse as a
    import textwrap as t
    import typing as ty

    text = "".join(pathlib.Path(m.__file__).read_text(encoding="utf-8") for m in (t, a, ty))
    return "".join(c for c in text if c.isascii())[:max_chars]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head
        self.n_embd = n_embd

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
        )

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, block: int, n_layer: int = 2, n_embd: int = 64, n_head: int = 4):
        super().__init__()
        self.block_size = block
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, n_embd),
                wpe=nn.Embedding(block, n_embd),
                h=nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx: tg.Tensor, targets: tg.Tensor | None = None) -> tuple:
        B, T = idx.size()
        pos = tg.arange(0, T, dtype=tg.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    @tg.no_grad()
    def generate(self, idx: tg.Tensor, n: int, temperature: float = 0.8, top_k: int = 10):
        for _ in range(n):
            logits, _ = self(idx[:, -self.block_size :])
            logits = logits[:, -1, :] / temperature
            v, _ = tg.topk(logits, min(top_k, logits.size(-1)))
            logits = logits.masked_fill(logits < v[:, [-1]], -float("inf"))
            nxt = tg.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = tg.cat((idx, nxt), dim=1)
        return idx


def train(mode: str, steps: int, batch: int = 16, block: int = 32, seed: int = 0) -> dict:
    text = corpus()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    rng = np.random.default_rng(seed)
    tg.manual_seed(seed)
    model = GPT(len(chars), block)
    opt = tg.optim.AdamW(model.parameters(), lr=3e-3)
    sched = tg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def step(x: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    run = tg.jit(step) if mode == "jit" else step
    times, losses, compiled = [], [], []
    for i in range(steps):
        starts = rng.integers(0, len(data) - block - 1, batch)
        x = tg.tensor(np.stack([data[s : s + block] for s in starts]))
        y = tg.tensor(np.stack([data[s + 1 : s + block + 1] for s in starts]))
        eager_before = run.stats["calls_while_compiling"] if mode == "jit" else 0
        t0 = time.perf_counter()
        losses.append(run(x, y).item())
        times.append(time.perf_counter() - t0)
        # a jitted call ran compiled unless it was one of the eager calls while compiling
        compiled.append(mode == "jit" and run.stats["calls_while_compiling"] == eager_before)
        sched.step()  # the learning rate changes every step: no recompile (docs/jit.md)
        if i % max(steps // 10, 1) == 0 or i == steps - 1:
            print(f"  {mode} step {i:4d}  loss {losses[-1]:.3f}  lr {sched.get_last_lr()[0]:.2e}")
    model.eval()
    start = tg.tensor([[stoi["d"], stoi["e"], stoi["f"]]])
    sample = "".join(chars[i] for i in model.generate(start, 120)[0].tolist())
    # the step time: the second half of the steps; for jit, its steps that ran compiled
    timed = times[len(times) // 2 :]
    if mode == "jit":
        timed = [t for t, c in zip(times[2:], compiled[2:]) if c][-len(timed) :]
    return {
        "losses": losses,
        "first_step_s": times[0] if mode == "eager" else sum(times[:2]),
        "step_s": float(np.median(timed)) if timed else float("nan"),
        "eager_while_compiling": (run.stats["calls_while_compiling"] if mode == "jit" else 0),
        "sample": sample,
        "stats": getattr(run, "stats", None),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("eager", "jit", "both"), default="eager")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    modes = ("eager", "jit") if args.mode == "both" else (args.mode,)
    results = {}
    for mode in modes:
        r = results[mode] = train(mode, args.steps)
        per_step = (
            "no step ran compiled" if np.isnan(r["step_s"]) else f"{r['step_s'] * 1e3:.1f} ms"
        )
        print(f"{mode}: final loss {r['losses'][-1]:.3f}, {per_step} per step")
        if r["eager_while_compiling"]:
            print(
                f"  ({r['eager_while_compiling']} steps ran eagerly while the worker compiled"
                + (
                    "; the compile was still running at the end: it finishes in the background"
                    " and the next run loads it)"
                    if np.isnan(r["step_s"])
                    else ")"
                )
            )
        print(f"{mode} sample:\n{r['sample']}\n")
    if len(results) == 2 and not np.isnan(results["jit"]["step_s"]):
        speedup = results["eager"]["step_s"] / results["jit"]["step_s"]
        print(f"jit vs eager: {speedup:.2f}x per step after compiling")


if __name__ == "__main__":
    main()
