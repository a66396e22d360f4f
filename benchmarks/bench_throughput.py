"""Benchmark: single-run training throughput (tokens/s, MFU) of the trainer against a plain PyTorch GPT.

Both sides train the same shapes (separate q/k/v/o projections, GELU MLP of 4·d, LayerNorm, learned positions,
untied unembedding) in the same process on the same device, with the same data loader (trainer.data.TokenBatches),
fused AdamW, bf16 autocast, SDPA, gradient clipping at 1.0 and one host sync per ``--log-every`` steps:

  ours      trainer.train.train_run on a MemoryRunLogger (the whole training loop: LR schedule, per-group AdamW,
            divergence checks, logging); tokens/s from its logged perf.tokens_per_s points
  baseline  PlainGPT below: nanoGPT-style, nothing but the model, the optimizer and the loop

Tokens/s is the median over the logged intervals after ``--warmup`` steps (compilation and allocator warm-up
excluded). MFU = tokens/s · (6·N_active + 12·L·d·T) / peak, with the 989 TFLOP/s dense bf16 peak of H100/H200
(trainer.train.PEAK_BF16_FLOPS). ``--params`` adds runs of ours under other parameterizations at
``--mult-width``: their multipliers (residual m_L^-α, readout 1/m_N, attention scale) must cost nothing.

Goals (issue, item 1): ours ≥ 0.95× the baseline at width ≥ 768; ≥ 40 % MFU at width 1024, depth 12, seq 1024.

Usage (GPU):  python benchmarks/bench_throughput.py [--widths 128 256 512 768 1024 1536 2048] [--compile|--no-compile]
Smoke test:   python benchmarks/bench_throughput.py --device cpu --widths 64 --depth 2 --seq 64 --batch 2 \
                  --vocab 256 --steps 4 --warmup 2 --log-every 2 --no-compile --params
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer import schema as S  # noqa: E402
from trainer.config import RunConfig  # noqa: E402
from trainer.data import TokenBatches  # noqa: E402
from trainer.model import GPT  # noqa: E402
from trainer.runlog import MemoryRunLogger  # noqa: E402
from trainer.train import describe_device, peak_flops, train_run  # noqa: E402


# ---- the plain PyTorch baseline ------------------------------------------------------------------------------
class PlainBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.up, self.down = nn.Linear(d, d_ff, bias=False), nn.Linear(d_ff, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (lin(h).view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)
                   for lin in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class PlainGPT(nn.Module):
    """A minimal GPT with the trainer's shapes and no parameterization: N(0, 0.02) init, no multipliers."""

    def __init__(self, width: int, depth: int, n_heads: int, seq_len: int, vocab: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(PlainBlock(width, n_heads, 4 * width) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x)).float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def run_baseline(cfg: RunConfig, dev: torch.device) -> list[tuple[int, float]]:
    """(step, tokens/s) per log interval of the plain loop; same data, clipping and sync cadence as train_run."""
    m, t = cfg.model, cfg.train
    torch.manual_seed(0)
    model = PlainGPT(m.width, m.depth, m.n_heads_eff, m.seq_len, m.vocab_size).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0, fused=True)
    fn = torch.compile(model) if t.compile and dev.type == "cuda" else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    data = TokenBatches(cfg.data, m.vocab_size, m.seq_len, t.batch_size, t.seed)
    tokens_per_step = t.batch_size * m.seq_len
    loss_acc = torch.zeros((), device=dev)
    points, t_last = [], time.perf_counter()
    for step in range(cfg.steps):
        x, y = data.next_train()
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast:
            loss = fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_acc += loss.detach().float()
        if (step + 1) % t.log_every == 0:
            float(loss_acc)  # the host sync train_run also does once per interval
            now = time.perf_counter()
            points.append((step + 1, t.log_every * tokens_per_step / (now - t_last)))
            t_last = now
    return points


def run_ours(cfg: RunConfig) -> list[tuple[int, float]]:
    log = MemoryRunLogger()
    result = train_run(cfg, log)
    if result.status != S.STATUS_OK:
        raise RuntimeError(f"trainer run {result.status}: {result.reason}")
    return [(step, v) for step, v in log.metrics[S.M_TOKENS_PER_S]]


def steady(points: list[tuple[int, float]], warmup: int) -> float:
    after = [v for step, v in points if step > warmup]
    return statistics.median(after or [v for _, v in points])


def make_config(args: argparse.Namespace, width: int, param: str) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"width": width, "depth": args.depth, "head_dim": args.head_dim, "seq_len": args.seq,
                  "vocab_size": args.vocab},
        "param": {"name": param, "base_width": 128, "base_depth": 2},
        "hp": {"lr": 1e-3},
        "train": {"batch_size": args.batch, "steps": args.warmup + args.steps, "log_every": args.log_every,
                  "eval_every": args.warmup + args.steps, "eval_batches": 1, "device": args.device,
                  "compile": args.compile, "divergence_factor": 1e9},
    })


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()


def measure(args: argparse.Namespace, width: int, params: list[str], dev: torch.device) -> list[dict]:
    rows = []
    base_cfg = make_config(args, width, "sp")
    flops = _flops_meta(base_cfg)
    peak = peak_flops(dev)
    base = steady(run_baseline(base_cfg, dev), args.warmup)
    _release()
    for param in params:
        ours = steady(run_ours(make_config(args, width, param)), args.warmup)
        _release()
        rows.append({"width": width, "param": param, "ours_tokens_per_s": round(ours, 1),
                     "baseline_tokens_per_s": round(base, 1), "ratio": round(ours / base, 4),
                     "ours_mfu": round(ours * flops / peak, 4) if peak else None,
                     "baseline_mfu": round(base * flops / peak, 4) if peak else None, "flops_per_token": flops})
        print(f"{width:>6} {param:<10} {ours:>12.0f} {base:>12.0f} {ours / base:>7.3f} "
              + (f"{ours * flops / peak:>8.1%} {base * flops / peak:>8.1%}" if peak else f"{'-':>8} {'-':>8}"),
              flush=True)
    return rows


def _flops_meta(cfg: RunConfig) -> float:
    """flops_per_token without allocating a large model (parameters on the meta device)."""
    with torch.device("meta"):
        return GPT(cfg).flops_per_token()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512, 768, 1024, 1536, 2048])
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=50304, help="GPT-2's padded vocabulary (data are bytes < 256)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps after the warm-up")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--param", default="completep", help="parameterization of ours at every width")
    ap.add_argument("--params", nargs="*", default=None,
                    help="also run these parameterizations at --mult-width (default with the flag: sp mup completep)")
    ap.add_argument("--mult-width", type=int, default=1024)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_throughput.json")
    args = ap.parse_args()
    if args.log_every > args.steps:
        ap.error(f"--log-every {args.log_every} > --steps {args.steps}: no throughput interval after the warm-up")
    if args.params == []:
        args.params = ["sp", "mup", "completep"]
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_throughput: no CUDA device (use --device cpu only as a smoke test)")
    print(f"device {describe_device(dev)}; depth {args.depth}, seq {args.seq}, batch {args.batch}, "
          f"vocab {args.vocab}, compile {args.compile}")
    print(f"{'width':>6} {'param':<10} {'ours tok/s':>12} {'plain tok/s':>12} {'ratio':>7} {'ours MFU':>8} "
          f"{'plain MFU':>8}", flush=True)
    rows = []
    for width in args.widths:
        params = [args.param] + ([p for p in args.params if p != args.param]
                                 if args.params and width == args.mult_width else [])
        rows += measure(args, width, params, dev)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "device": describe_device(dev), "torch": torch.__version__, "commit": git_commit(),
        "command": " ".join(sys.argv), "machine": platform.platform(), "compile": args.compile,
        "depth": args.depth, "seq": args.seq, "batch": args.batch, "vocab": args.vocab, "head_dim": args.head_dim,
        "goals": {"ratio_at_width_ge_768": 0.95, "mfu_at_1024": 0.40}, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
