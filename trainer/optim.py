"""AdamW parameter groups from the parameterization, and the LR schedule that scales each group relative to its own LR.

Groups with identical (lr, eps, wd, betas) are merged (spec §1 req. 1: "or at least per distinct tuple") so a deep
model does not pay per-group kernel launches for groups that are the same. Each group keeps its base LR in
``base_lr``; the schedule sets ``lr = sched(t)·base_lr`` and never an absolute value, the classic bug of spec §7.6.
"""

from __future__ import annotations

import math

import torch

from trainer.config import OptimConfig
from trainer.model import GPT
from trainer.parameterization import group_setting


def build_param_groups(model: GPT) -> list[dict]:
    """One AdamW group per distinct effective (lr, eps, wd, beta1, beta2)."""
    groups: dict[tuple[float, float, float, float, float], dict] = {}
    for name, p, module, layer in model.classified_parameters():
        g = group_setting(model.cfg, module, layer)
        key = (g.lr, g.eps, g.wd, g.beta1, g.beta2)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr": g.lr, "base_lr": g.lr, "eps": g.eps,
                           "weight_decay": g.wd, "betas": (g.beta1, g.beta2)}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def make_optimizer(model: GPT, device: torch.device) -> torch.optim.AdamW:
    """torch.optim.AdamW, fused where the device supports it (CUDA, and CPU in recent torch), else foreach."""
    groups = build_param_groups(model)
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, foreach=device.type != "cpu")


def lr_scale(step: int, total: int, o: OptimConfig) -> float:
    """sched(t) in [0, 1]: linear warmup, then cosine / linear / WSD / constant down to min_lr_frac."""
    warm = int(round(o.warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    if o.schedule == "constant":
        return 1.0
    if o.schedule == "wsd":
        decay_start = total - int(round(o.decay_frac * total))
        if step < max(decay_start, warm):
            return 1.0
        progress = (step - max(decay_start, warm)) / max(1, total - max(decay_start, warm))
        return 1.0 - (1.0 - o.min_lr_frac) * progress
    progress = (step - warm) / max(1, total - warm)
    if o.schedule == "linear":
        return 1.0 - (1.0 - o.min_lr_frac) * progress
    return o.min_lr_frac + (1.0 - o.min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_schedule(optimizer: torch.optim.Optimizer, scale: float) -> None:
    """Relative LR: every group keeps its parameterization-given ratio to the others."""
    for group in optimizer.param_groups:
        group["lr"] = scale * group["base_lr"]
