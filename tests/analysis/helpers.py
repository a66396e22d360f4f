"""Synthetic sweeps in the load_runs table layout, with a known optimum, for the analysis tests."""

from __future__ import annotations

import math
import uuid

import numpy as np
import polars as pl

from trainer import schema as S

LR_GRID = 2.0 ** np.arange(-12, -3.5, 0.5)  # 17 values, factor √2 apart


def true_log_opt(width: float, slope: float, base: float = math.log(3e-3), base_width: float = 128) -> float:
    """ln η*(width) = ln 3e-3 + slope·ln(width/128)."""
    return base + slope * math.log(width / base_width)


def sweep_runs(widths=(64, 128, 256, 512), *, slope: float = 0.0, param: str = "mup", seeds: int = 1,
               noise: float = 0.002, curvature: float = 0.05, lrs=LR_GRID, rng: np.random.Generator | None = None,
               diverge_above: float = 4.0, extra: dict | None = None) -> pl.DataFrame:
    """One run per (width, lr, seed): loss = L*(w)·(1 + curvature·(ln lr − ln η*)²) + noise; runs more than
    ``diverge_above`` (ln units) above the optimum are NaN (diverged). Columns follow trainer.schema."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for w in widths:
        x0 = true_log_opt(w, slope)
        best = 3.0 - 0.2 * math.log2(w / 64)
        for lr in lrs:
            for seed in range(seeds):
                d = math.log(lr) - x0
                loss = best * (1 + curvature * d * d) + noise * rng.standard_normal()
                diverged = d > diverge_above
                rows.append({
                    "run_id": uuid.UUID(int=int(rng.integers(0, 2**63))).hex, "experiment": "synthetic",
                    "mlflow_status": "FINISHED", "start_time": 0, "end_time": len(rows),
                    "model.width": float(w), "model.depth": 2.0, "model.head_dim": 32.0, "train.batch_size": 16.0,
                    "train.steps": 200.0, "train.tokens": 0.0, "model.seq_len": 128.0, "train.seed": float(seed),
                    S.P_LR: float(lr), S.P_PARAMETERIZATION: param, "param.base_width": 128.0, S.P_STEPS: 200.0,
                    S.T_RUN_KIND: "train", S.T_STATUS: S.STATUS_DIVERGED if diverged else S.STATUS_OK,
                    S.S_INITIAL_LOSS: 5.5, S.S_FINAL_VAL_LOSS: math.nan if diverged else loss,
                    S.S_STEPS_DONE: 120.0 if diverged else 200.0, **(extra or {}),
                })
    return pl.DataFrame(rows)
