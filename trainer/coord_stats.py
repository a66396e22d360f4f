"""Coordinate-check statistics, torch-free so the dashboard can use them: how fast each module's activation (or its
change since step 0) grows with width or depth. Rows come from trainer.coord_check (or its logged MLflow runs)."""

from __future__ import annotations

import math

import numpy as np

HOOKED = ("token_emb", "attn_q", "attn_k", "attn_o", "mlp_up", "mlp_down")
# Beyond module outputs: the residual stream after each block and the final logits.
EXTRA = ("resid", "logits")
MODULES = HOOKED + EXTRA


def growth_exponent(rows: list[dict], param: str, module: str, step: int, key: str = "delta") -> float:
    """Least-squares slope of log(key) against log(value): ~0 is flat (transfers), ~1 grows linearly with scale."""
    pts = [(r["value"], r[key]) for r in rows
           if r["param"] == param and r["module"] == module and r["step"] == step and r[key] > 0]
    if len(pts) < 2:
        return math.nan
    xs = np.log([p[0] for p in pts])
    ys = np.log([p[1] for p in pts])
    return float(np.polyfit(xs, ys, 1)[0])


def format_table(rows: list[dict], axis: str) -> str:
    """Growth exponent of |Δactivation| against the axis, per parameterization and module, at the last step."""
    params = sorted({r["param"] for r in rows})
    last = max(r["step"] for r in rows)
    lines = [f"slope of log |Δact| vs log {axis} at step {last} (0 = flat):",
             f"{'module':<10} " + " ".join(f"{p:>10}" for p in params)]
    for module in MODULES:
        cells = [growth_exponent(rows, p, module, last) for p in params]
        lines.append(f"{module:<10} " + " ".join(f"{c:>10.2f}" for c in cells))
    return "\n".join(lines)
