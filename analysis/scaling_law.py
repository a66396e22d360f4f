"""Fitting paradigm (spec §2, §6.4): η*(N, D) = a·N^b·D^c and B*(D) = a·D^c with prediction intervals.

Fitted in logs by the same WLS as the axis fits (analysis.transfer.wls: 1/(se² + τ²) weights, Knapp–Hartung
scale). N is the non-embedding parameter count (Step Law's convention; falls back to all parameters), D the planned
training tokens. A design where D is (nearly) a fixed multiple of N cannot separate b from c, so the fit is refused
with the reason instead of returning exponents that are pure noise (§6.4 'collinearity caution').
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from analysis.transfer import LinearFit, wls
from trainer import schema as S


@dataclass
class ScalingLaw:
    """``form`` names the law; ``coef``: {"ln_a", "b_N", "c_D"} (present ones); ``refused``: why no fit was made
    (then coef is empty). ``cells``: the (N, D, opt) points used, for plots and as evidence."""

    target: str
    form: str
    coef: dict[str, float] = field(default_factory=dict)
    se: dict[str, float] = field(default_factory=dict)
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    cov: list[list[float]] = field(default_factory=list)
    n: int = 0
    dof: int = 0
    tau2: float = math.nan
    condition_number: float = math.nan
    refused: str | None = None
    cells: list[dict] = field(default_factory=list)
    _fit: LinearFit | None = field(default=None, repr=False)
    _names: list[str] = field(default_factory=list, repr=False)

    def predict(self, N: float | None = None, D: float | None = None, level: float = 0.95) -> dict[str, float]:
        """Value with a confidence interval (parameters only) and a prediction interval (plus the between-cell
        scatter τ²) at (N, D)."""
        if self._fit is None:
            raise ValueError(f"no fitted law: {self.refused}")
        x0 = [1.0]
        for name in self._names[1:]:
            v = N if name == "b_N" else D
            if v is None or not v > 0:
                raise ValueError(f"the law {self.form} needs a positive {'N' if name == 'b_N' else 'D'}")
            x0.append(math.log(v))
        x = np.array(x0)
        mean = float(x @ self._fit.beta)
        var_c = float(x @ self._fit.cov @ x)
        var_p = var_c + (self.tau2 if math.isfinite(self.tau2) else 0.0)
        q = self._fit.quantile(level)
        return {"value": math.exp(mean), "log_sd": math.sqrt(max(var_p, 0.0)),
                "ci_lo": math.exp(mean - q * math.sqrt(max(var_c, 0))), "ci_hi": math.exp(mean + q * math.sqrt(
                    max(var_c, 0))), "pi_lo": math.exp(mean - q * math.sqrt(max(var_p, 0))),
                "pi_hi": math.exp(mean + q * math.sqrt(max(var_p, 0)))}


def _design(logN: np.ndarray | None, logD: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    names, cols = ["ln_a"], [np.ones(len(logN if logN is not None else logD))]  # type: ignore[arg-type]
    if logN is not None:
        names.append("b_N")
        cols.append(logN)
    if logD is not None:
        names.append("c_D")
        cols.append(logD)
    return names, np.column_stack(cols)


def fit_law(log_y: np.ndarray, se: np.ndarray | None, N: np.ndarray | None, D: np.ndarray | None, *,
            target: str, max_condition: float = 30.0, min_tpp_spread: float = 0.1) -> ScalingLaw:
    """Fit ln y = ln a + b ln N + c ln D (terms present when N / D given and varying).

    Refuses (``refused`` set) with fewer points than parameters + 1, or when ln N and ln D are collinear: the
    spread (SD) of ln(D/N) below ``min_tpp_spread`` (≈ constant tokens per parameter) or a condition number of the
    standardized design above ``max_condition``."""
    logN = np.log(N) if N is not None and len(np.unique(N)) > 1 else None
    logD = np.log(D) if D is not None and len(np.unique(D)) > 1 else None
    form = "a" + (" * N^b" if logN is not None else "") + (" * D^c" if logD is not None else "")
    law = ScalingLaw(target=target, form=f"{target} = {form}", n=len(log_y))
    if logN is None and logD is None:
        law.refused = "neither N nor D varies across the usable optima"
        return law
    names, X = _design(logN, logD)
    if len(log_y) < X.shape[1] + 1:
        law.refused = f"{len(log_y)} usable optima; the form {form} needs ≥ {X.shape[1] + 1}"
        return law
    if logN is not None and logD is not None:
        tpp = logD - logN
        if float(np.std(tpp)) < min_tpp_spread:
            law.refused = (f"N and D are collinear: tokens per parameter is ≈ {math.exp(float(np.mean(tpp))):.3g} in "
                           f"every cell (SD of ln(D/N) = {np.std(tpp):.3f}), so the N and D exponents are not "
                           "separately identifiable; add token budgets at other tokens-per-parameter ratios")
            return law
        Z = (X[:, 1:] - X[:, 1:].mean(0)) / X[:, 1:].std(0)
        law.condition_number = float(np.linalg.cond(Z))
        if law.condition_number > max_condition:
            law.refused = (f"N and D are nearly collinear (condition number {law.condition_number:.0f} > "
                           f"{max_condition:.0f}); vary tokens per parameter more")
            return law
    fit = wls(X, log_y, se)
    law._fit, law._names = fit, names
    law.dof, law.tau2 = fit.dof, fit.tau2
    law.cov = fit.cov.tolist()
    for k, name in enumerate(names):
        law.coef[name] = float(fit.beta[k])
        law.se[name] = math.sqrt(max(fit.cov[k, k], 0.0))
        law.ci95[name] = fit.ci(k, 0.95)
    return law


def fit_lr_law(opt: pl.DataFrame, *, param: str | None = None, n_col: str = "n_params_non_emb",
               d_col: str = "scale.tokens") -> ScalingLaw:
    """η*(N, D) over the usable optima of an optimum table (optionally one parameterization).

    Cells without N fall back to ``n_params`` and then to ``scale.width`` (so external sweeps without parameter
    counts still get a width law)."""
    rows = opt.filter(pl.col("usable"))
    if param is not None and S.P_PARAMETERIZATION in rows.columns:
        rows = rows.filter(pl.col(S.P_PARAMETERIZATION) == param)
    target = rows["hp"][0] if rows.height else (opt["hp"][0] if opt.height else "hp")
    N = _first_finite(rows, [n_col, "n_params", "scale.width"])
    D = _first_finite(rows, [d_col])
    keep = np.ones(rows.height, bool)
    for arr in (N, D):
        if arr is not None:
            keep &= np.isfinite(arr) & (arr > 0)
    rows = rows.filter(pl.Series(keep))
    N = N[keep] if N is not None else None
    D = D[keep] if D is not None else None
    law = fit_law(rows["log_opt"].to_numpy(), rows["se_log"].to_numpy(), N, D, target=target)
    law.cells = [{"N": None if N is None else float(N[i]), "D": None if D is None else float(D[i]),
                  "opt": float(math.exp(v)), "run_ids": ids}
                 for i, (v, ids) in enumerate(zip(rows["log_opt"].to_list(), rows["run_ids"].to_list(),
                                                  strict=True))]
    return law


def fit_batch_law(opt2d: pl.DataFrame, *, param: str | None = None, d_col: str = "scale.tokens") -> ScalingLaw:
    """B*(D) = a·D^c over the 2-D optima (analysis.optimum.optimum_2d_table) with a positive-definite Hessian."""
    rows = opt2d.filter(pl.col("method") == "quadratic") if "method" in opt2d.columns else opt2d
    if param is not None and S.P_PARAMETERIZATION in rows.columns:
        rows = rows.filter(pl.col(S.P_PARAMETERIZATION) == param)
    D = _first_finite(rows, [d_col])
    if D is None or rows.is_empty():
        return ScalingLaw(target="batch", form="batch = a * D^c", refused="no usable 2-D (lr, batch) optimum")
    keep = np.isfinite(D) & (D > 0)
    rows = rows.filter(pl.Series(keep))
    se = rows["se_log_batch"].to_numpy()
    return fit_law(np.log(rows["batch"].to_numpy()), se, None, D[keep], target="batch")


def _first_finite(rows: pl.DataFrame, cols: list[str]) -> np.ndarray | None:
    """Values of the first column that exists and is finite in every row, else None."""
    for col in cols:
        if col in rows.columns and rows.height:
            arr = rows[col].cast(pl.Float64, strict=False).fill_null(math.nan).to_numpy()
            if np.all(np.isfinite(arr)):
                return arr
    return None
