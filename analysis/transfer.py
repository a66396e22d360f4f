"""How the optimum moves along one scale axis, and whether transfer holds (spec §6.4–6.5, §1).

Input is an optimum table (analysis.optimum.optimum_table). Along an axis (width, depth, batch, tokens, experts) the
rows that share every other slice column form a *group*; within it ln(opt) is regressed on ln(scale):

* weighted least squares with w = 1/(se² + τ²), where τ² is the DerSimonian–Laird between-scale variance, and a
  Knapp–Hartung variance scale (never below 1) with t_{n−2} quantiles. Why: the per-scale delta-method SEs
  describe noise within a slice, but optima also scatter between scales (on the μP demo the reduced χ² of a pure
  1/se² fit is ~15); τ² absorbs that instead of letting one very sharp slice dominate (§6.4 asks for WLS with
  1/σ²; this is WLS with the σ² that the scatter supports);
* leave-largest-scale-out error and its implied loss penalty; a (ln s)² curvature term with its CI and AIC (§6.4);
* verdict by an equivalence test (TOST) on the slope with margin ε = sqrt(τ_loss/c)/r from a tolerable relative
  loss penalty τ_loss, the measured curvature c and the span r (§6.5 item 1); realised transfer penalties Δ_s;
  Wortsman LR sensitivity; the Kalra & Barkeshli quantities E, κ and R(∞) as *our operationalization* (§1; the
  paper's own formulas were not available).

Only usable optima (quadratic vertex, no edge or conditioning flag) enter the slope fit; excluded scales are listed
with the reason.

Of scipy this module imports only scipy.special at load time (t and normal quantiles: ``stdtrit``/``ndtri``, what
scipy.stats' ``t.ppf``/``norm.ppf`` evaluate) and computes the Akima curve itself (``_interp``, the same arithmetic
as scipy.interpolate.Akima1DInterpolator): scipy.stats and scipy.interpolate would add ~0.5 s to the first page of
every dashboard process, which runs these functions on every Transfer page. scipy.optimize (the R(∞) fit) is
imported where it is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import special

from analysis.optimum import EDGE_FLAGS
from trainer import schema as S

AXES = tuple(S.AXES)
# Default tolerable loss penalty τ (relative), the top of the 0.1–0.5 % range of analysis-methods.md §transfer tests
# (TOST margin and the Δ_s ≤ τ check); the report, the recommendation and the dashboard all start from it.
DEFAULT_TAU = 0.005


# ---------------------------------------------------------------------------------------------------------------
# Weighted power-law fit
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class LinearFit:
    """y = X·beta with the covariance used for intervals. ``tau2``: between-point variance added to the SEs;
    ``scale``: Knapp–Hartung factor applied to the covariance; ``dof``: residual degrees of freedom (t quantiles;
    0 means the SEs were taken as exact and normal quantiles are used)."""

    beta: np.ndarray
    cov: np.ndarray
    dof: int
    tau2: float
    scale: float
    weights: np.ndarray
    resid: np.ndarray

    def quantile(self, level: float) -> float:
        """Two-sided ``level`` quantile: t with ``dof`` (scipy.stats.t.ppf), normal when dof is 0."""
        p = 0.5 + level / 2
        return float(special.stdtrit(self.dof, p)) if self.dof > 0 else float(special.ndtri(p))

    def ci(self, k: int, level: float) -> tuple[float, float]:
        half = self.quantile(level) * math.sqrt(max(self.cov[k, k], 0.0))
        return float(self.beta[k] - half), float(self.beta[k] + half)


def wls(X: np.ndarray, y: np.ndarray, se: np.ndarray | None = None) -> LinearFit:
    """WLS with DerSimonian–Laird τ² and truncated Knapp–Hartung scaling (module docstring); OLS when ``se`` is
    None. With no residual dof the SEs are taken at face value (τ² = 0, normal quantiles)."""
    n, p = X.shape
    dof = n - p
    if se is None or not np.all(np.isfinite(se)) or np.any(se <= 0):
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        s2 = float(resid @ resid) / dof if dof > 0 else math.nan
        cov = s2 * np.linalg.pinv(X.T @ X)
        return LinearFit(beta, cov, dof, math.nan, 1.0, np.ones(n), resid)
    v = se ** 2
    tau2 = 0.0
    if dof > 0:
        w = 1 / v
        A = np.linalg.pinv(X.T @ (w[:, None] * X))
        beta = A @ X.T @ (w * y)
        Q = float(np.sum(w * (y - X @ beta) ** 2))
        trace = float(w.sum() - np.trace(A @ X.T @ ((w ** 2)[:, None] * X)))
        tau2 = max(0.0, (Q - dof) / trace) if trace > 0 else 0.0
    w = 1 / (v + tau2)
    A = np.linalg.pinv(X.T @ (w[:, None] * X))
    beta = A @ X.T @ (w * y)
    resid = y - X @ beta
    scale = max(1.0, float(np.sum(w * resid ** 2)) / dof) if dof > 0 else 1.0
    return LinearFit(beta, A * scale, dof, tau2, scale, w, resid)


@dataclass
class PowerLawFit:
    """ln opt = intercept + slope·ln s. E (K&B fit quality, our operationalization §1): weighted RMS log-residual,
    also as a factor exp(E). ``loo_error``: |ln opt_k − prediction from the smaller scales| at the largest scale.
    ``curv_coef``/``curv_ci95``: the (ln s)² term of the quadratic alternative; ``curved`` when its CI excludes
    0; AICs when ≥ 4 scales."""

    slope: float
    slope_se: float
    slope_ci90: tuple[float, float]
    slope_ci95: tuple[float, float]
    intercept: float
    cov: list[list[float]]
    n: int
    dof: int
    tau2: float
    E: float
    E_factor: float
    loo_error: float = math.nan
    curv_coef: float = math.nan
    curv_ci95: tuple[float, float] = (math.nan, math.nan)
    curved: bool = False
    aic_linear: float = math.nan
    aic_quadratic: float = math.nan
    _fit: LinearFit | None = field(default=None, repr=False)

    def predict(self, scale: float, level: float = 0.95) -> tuple[float, float, float]:
        """(opt, lower, upper) at ``scale``: a prediction interval (parameter covariance + the between-scale
        variance τ²), i.e. where a new scale's optimum is expected to land."""
        x0 = np.array([1.0, math.log(scale)])
        mean = float(x0 @ np.array([self.intercept, self.slope]))
        var = float(x0 @ np.array(self.cov) @ x0) + (self.tau2 if math.isfinite(self.tau2) else 0.0)
        q = self._fit.quantile(level) if self._fit is not None else 1.96
        half = q * math.sqrt(max(var, 0.0))
        return math.exp(mean), math.exp(mean - half), math.exp(mean + half)

    def log_sd_at(self, scale: float) -> float:
        x0 = np.array([1.0, math.log(scale)])
        var = float(x0 @ np.array(self.cov) @ x0) + (self.tau2 if math.isfinite(self.tau2) else 0.0)
        return math.sqrt(max(var, 0.0))


def fit_power_law(scales: Sequence[float], log_opt: Sequence[float], se_log: Sequence[float] | None = None
                  ) -> PowerLawFit:
    """Fit ln opt against ln scale (spec §6.4). Needs ≥ 2 distinct scales; raises ValueError otherwise."""
    s = np.asarray(scales, float)
    y = np.asarray(log_opt, float)
    se = None if se_log is None else np.asarray(se_log, float)
    if len(np.unique(s)) < 2:
        raise ValueError(f"a power law needs at least 2 distinct scales, got {sorted(set(s.tolist()))}")
    x = np.log(s)
    X = np.column_stack([np.ones_like(x), x])
    fit = wls(X, y, se)
    w = fit.weights
    E = math.sqrt(float(np.sum(w * fit.resid ** 2) / np.sum(w)))
    out = PowerLawFit(slope=float(fit.beta[1]), slope_se=math.sqrt(max(fit.cov[1, 1], 0.0)),
                      slope_ci90=fit.ci(1, 0.90), slope_ci95=fit.ci(1, 0.95), intercept=float(fit.beta[0]),
                      cov=fit.cov.tolist(), n=len(s), dof=fit.dof, tau2=fit.tau2, E=E, E_factor=math.exp(E),
                      _fit=fit)
    order = np.argsort(x)
    if len(np.unique(s)) >= 3:  # leave the largest scale out (§6.4 validation)
        keep = order[:-1]
        sub = wls(X[keep], y[keep], None if se is None else se[keep])
        out.loo_error = float(abs(y[order[-1]] - X[order[-1]] @ sub.beta))
    if len(np.unique(s)) >= 4:  # curvature test (§6.4, arXiv 2606.29158)
        Xq = np.column_stack([X, x ** 2])
        q = wls(Xq, y, se)
        out.curv_coef = float(q.beta[2])
        out.curv_ci95 = q.ci(2, 0.95)
        out.curved = not (out.curv_ci95[0] <= 0 <= out.curv_ci95[1])
        out.aic_linear = _aic(fit)
        out.aic_quadratic = _aic(q)
    return out


def _aic(fit: LinearFit) -> float:
    n, k = len(fit.resid), len(fit.beta)
    rss = float(np.sum(fit.weights * fit.resid ** 2))
    return n * math.log(max(rss / n, 1e-300)) + 2 * k


# ---------------------------------------------------------------------------------------------------------------
# Per-axis transfer verdict
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class AxisTransfer:
    """Everything the verdict table and the dashboard show for one (axis, hp, group).

    ``group``: the fixed slice columns (param.name …); ``scales``/``log_opt``/``se_log``/``used``: per-scale
    optima and whether they entered the fit (``excluded`` gives why not). ``penalties``: realised Δ_s =
    L_s(opt_base)/L_s* − 1 at every scale above the base (inf: the transferred value diverged there; NaN: outside
    the sampled grid). ``sensitivity``: Wortsman LR sensitivity per scale. ``kappa``: K&B robustness exponent
    (curvature ∝ s^κ, our operationalization). ``verdict``: holds | fails | inconclusive, ``reasons`` say why."""

    axis: str
    hp: str
    group: dict
    scales: list[float]
    log_opt: list[float]
    se_log: list[float]
    used: list[bool]
    excluded: dict[float, str]
    fit: PowerLawFit | None
    tau: float
    span: float
    curvature_ref: float
    tost_eps: float
    verdict: str
    reasons: list[str]
    penalties: dict[float, float]
    max_penalty: float
    sensitivity: dict[float, float]
    kappa: float = math.nan
    kappa_ci95: tuple[float, float] = (math.nan, math.nan)
    loo_penalty: float = math.nan
    base_scale: float = math.nan


def group_columns(opt: pl.DataFrame, axis: str) -> list[str]:
    """Slice columns of an optimum table (every column with a dot) except the axis' own scale column."""
    return [c for c in opt.columns if "." in c and c != f"scale.{axis}"]


def axis_transfer(opt: pl.DataFrame, axis: str, *, tau: float = DEFAULT_TAU, target: float | None = None,
                  level: float = 0.90) -> list[AxisTransfer]:
    """Transfer analysis along ``axis`` for every group of the optimum table that has ≥ 1 scale on it.

    ``tau``: tolerable relative loss penalty (default 0.5 %, §6.5 suggests 0.1–0.5 %). ``target``: the scale you
    intend to transfer to; the span r is ln(target/s_max) beyond the largest scale when a target above it is given,
    else the tested span ln(s_max/s_min) (transfer from the smallest to the largest tested scale) [OURS: §6.5
    defines r for a target only]. ``level``: the TOST CI level (90 % = two one-sided 5 % tests)."""
    col = f"scale.{axis}"
    if col not in opt.columns or opt[col].drop_nulls().n_unique() < 2:
        return []  # the axis is not varied anywhere: nothing to say (the report lists such axes separately)
    keys = group_columns(opt, axis)
    out = []
    data = opt.filter(pl.col(col).is_not_null())
    groups = data.group_by(keys, maintain_order=True) if keys else [((), data)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        out.append(_one_group(part.sort(col), axis, dict(zip(keys, key, strict=True)), tau, target, level))
    return out


def _one_group(part: pl.DataFrame, axis: str, group: dict, tau: float, target: float | None,
               level: float) -> AxisTransfer:
    col = f"scale.{axis}"
    hp = part["hp"][0]
    rows = part.to_dicts()
    scales = [float(r[col]) for r in rows]
    excluded: dict[float, str] = {}
    used = []
    for r, s in zip(rows, scales, strict=True):
        why = None
        if not r["usable"]:
            why = ", ".join(f for f in r["flags"]) or f"method {r['method']}"
        elif not (r["se_log"] is not None and math.isfinite(r["se_log"])):
            why = "no standard error"
        if why:
            excluded[s] = why
        used.append(why is None)
    u_s = [s for s, k in zip(scales, used, strict=True) if k]
    u_y = [r["log_opt"] for r, k in zip(rows, used, strict=True) if k]
    u_se = [r["se_log"] for r, k in zip(rows, used, strict=True) if k]
    reasons: list[str] = []
    fit = None
    if len(set(scales)) < 2:
        reasons.append(f"one scale only ({axis}={scales[0]:g}); need ≥ 3 usable scales for a slope interval")
    elif len(set(u_s)) < 2:
        reasons.append(f"{len(set(u_s))} usable scale(s) of {len(set(scales))}; the others: "
                       + "; ".join(f"{s:g}: {w}" for s, w in excluded.items()))
    else:
        fit = fit_power_law(u_s, u_y, u_se)
        if len(set(u_s)) == 2:
            reasons.append("2 usable scales: slope interval assumes the per-scale SEs are exact")
    curv = {s: r["curvature"] for s, r in zip(scales, rows, strict=True)
            if r["curvature"] is not None and math.isfinite(r["curvature"]) and r["curvature"] > 0}
    c_ref = curv[max(u_s)] if u_s and max(u_s) in curv else (float(np.median(list(curv.values()))) if curv
                                                              else math.nan)
    s_min, s_max = min(scales), max(scales)
    span = math.log(target / s_max) if target and target > s_max else math.log(s_max / s_min) if s_max > s_min \
        else math.nan
    eps = math.sqrt(tau / c_ref) / span if (math.isfinite(c_ref) and span and math.isfinite(span)) else math.nan
    base_idx = next((i for i, k in enumerate(used) if k), 0)
    penalties = _penalties(rows, scales, base_idx)
    sens = _sensitivity(rows, scales)
    finite_pen = [p for p in penalties.values() if not math.isnan(p)]
    max_pen = max(finite_pen) if finite_pen else math.nan
    verdict = "inconclusive"
    if fit is not None:
        lo, hi = fit.slope_ci90 if level == 0.90 else fit._fit.ci(1, level)  # type: ignore[union-attr]
        if not math.isfinite(eps):
            reasons.append("no curvature estimate, so no equivalence margin")
        elif lo > eps or hi < -eps:
            verdict = "fails"
            reasons.append(f"slope {fit.slope:+.3f}, {level:.0%} CI [{lo:+.3f}, {hi:+.3f}] lies outside ±{eps:.3f}")
        elif -eps < lo and hi < eps:
            verdict = "holds"
        else:
            reasons.append(f"slope {level:.0%} CI [{lo:+.3f}, {hi:+.3f}] overlaps the margin ±{eps:.3f}")
    if any(math.isinf(p) for p in penalties.values()):
        bad = [s for s, p in penalties.items() if math.isinf(p)]
        verdict = "fails"
        reasons.append(f"the base optimum diverges at {axis}={', '.join(f'{s:g}' for s in bad)}")
    elif verdict == "holds" and finite_pen and max_pen > tau:
        verdict = "inconclusive"
        reasons.append(f"realised penalty {max_pen:.2%} exceeds τ={tau:.2%}")
    top = sorted(set(scales))[-2:]
    edge_top = [s for s, r in zip(scales, rows, strict=True) if s in top and any(f in EDGE_FLAGS for f in r["flags"])]
    if verdict == "holds" and edge_top:
        verdict = "inconclusive"
        reasons.append(f"edge flags at the largest scales {edge_top}")
    kappa, kappa_ci = _kappa(curv)
    loo_pen = fit.loo_error ** 2 * c_ref if fit is not None and math.isfinite(fit.loo_error) else math.nan
    return AxisTransfer(axis=axis, hp=hp, group=group, scales=scales, log_opt=[r["log_opt"] for r in rows],
                        se_log=[r["se_log"] for r in rows], used=used, excluded=excluded, fit=fit, tau=tau, span=span,
                        curvature_ref=c_ref, tost_eps=eps, verdict=verdict, reasons=reasons, penalties=penalties,
                        max_penalty=max_pen, sensitivity=sens, kappa=kappa, kappa_ci95=kappa_ci,
                        loo_penalty=loo_pen, base_scale=scales[base_idx])


def _curve(row: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(row["grid_log_hp"], float), np.asarray(row["grid_loss"], float)


def _interp(xs: np.ndarray, ys: np.ndarray) -> Callable[[np.ndarray | float], np.ndarray] | None:
    """Akima in ln hp (Porian, §6.2 item 3): follows asymmetric basins, never overshoots between points; a straight
    line through 2 points; None for fewer. The returned function takes values within [xs[0], xs[-1]].

    The arithmetic of scipy.interpolate.Akima1DInterpolator (method "akima") and, for 2 points, interp1d, operation
    for operation (tests/analysis compare both on random and real curves); written out so that the dashboard does
    not import scipy.interpolate (module docstring)."""
    if len(xs) < 2:
        return None
    dx = np.diff(xs)
    slope = np.diff(ys) / dx
    if len(xs) == 2:
        return lambda x: slope[0] * (np.asarray(x, float) - xs[0]) + ys[0]
    m = np.empty(len(xs) + 3)  # interval slopes, extended by two on each side
    m[2:-2] = slope
    m[1] = 2.0 * m[2] - m[3]
    m[0] = 2.0 * m[1] - m[2]
    m[-2] = 2.0 * m[-3] - m[-4]
    m[-1] = 2.0 * m[-2] - m[-3]
    t = 0.5 * (m[3:] + m[:-3])  # the derivative where Akima's weights are both ~0 (m1 == m2 != m3 == m4)
    dm = np.abs(np.diff(m))
    f1, f2 = dm[2:], dm[:-2]
    f12 = f1 + f2
    ind = np.nonzero(f12 > 1e-9 * np.max(f12))[0]
    t[ind] = m[ind + 1] + (f2[ind] / f12[ind]) * (m[ind + 2] - m[ind + 1])
    # cubic Hermite pieces in powers of s = x − xs[i]: c0·s³ + c1·s² + c2·s + c3
    k = (t[:-1] + t[1:] - 2 * slope) / dx
    c0, c1, c2, c3 = k / dx, (slope - t[:-1]) / dx - k, t[:-1], ys[:-1]

    def f(x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, float)
        i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
        s = x - xs[i]
        s2 = s * s
        return c3[i] + c2[i] * s + c1[i] * s2 + c0[i] * (s2 * s)

    return f


def loss_at(row: dict, log_hp: float) -> float:
    """The slice's loss read off its interpolated curve at ln hp: inf at or above its lowest diverged value, NaN
    outside the sampled ok range."""
    xs, ys = _curve(row)
    div = [d for d in row["diverged_log_hp"] if d > (xs.max() if len(xs) else -math.inf)]
    if div and log_hp >= min(div) - 1e-9:
        return math.inf
    if len(xs) == 0 or log_hp < xs.min() - 1e-9 or log_hp > xs.max() + 1e-9:
        return math.nan
    f = _interp(xs, ys)
    return float(ys[0]) if f is None else float(f(np.clip(log_hp, xs.min(), xs.max())))


def best_loss(row: dict) -> float:
    """Minimum of the slice's interpolated curve (L_s* for the penalty ratio)."""
    xs, ys = _curve(row)
    f = _interp(xs, ys)
    if f is None:
        return float(ys.min()) if len(ys) else math.nan
    fine = np.linspace(xs.min(), xs.max(), 512)
    return float(min(np.min(f(fine)), ys.min()))


def _penalties(rows: list[dict], scales: list[float], base_idx: int) -> dict[float, float]:
    """Realised transfer penalty Δ_s (§6.5 item 2) of using the base scale's optimum at every larger scale."""
    base = rows[base_idx]["log_opt"]
    out = {}
    if base is None or not math.isfinite(base):
        return out
    for r, s in zip(rows, scales, strict=True):
        if s <= scales[base_idx]:
            continue
        val, best = loss_at(r, base), best_loss(r)
        out[s] = math.inf if math.isinf(val) else (val / best - 1 if best > 0 and math.isfinite(val) else math.nan)
    return out


def _sensitivity(rows: list[dict], scales: list[float]) -> dict[float, float]:
    """Wortsman et al. LR sensitivity E_η[min(ℓ(η), ℓ₀) − ℓ*] over the grid range common to all scales;
    diverged values count as ℓ₀ (§4, §6.1 censoring rule (c))."""
    ranges = []
    for r in rows:
        allx = list(r["grid_log_hp"]) + list(r["diverged_log_hp"])
        if allx:
            ranges.append((min(allx), max(allx)))
    if not ranges:
        return {}
    lo, hi = max(a for a, _ in ranges), min(b for _, b in ranges)
    out = {}
    for r, s in zip(rows, scales, strict=True):
        xs, ys = _curve(r)
        l0 = r.get("initial_loss")
        if l0 is None or not math.isfinite(l0):
            l0 = float(ys.max()) if len(ys) else math.nan
        vals = [min(y, l0) for x, y in zip(xs, ys, strict=True) if lo - 1e-9 <= x <= hi + 1e-9]
        vals += [l0 for d in r["diverged_log_hp"] if lo - 1e-9 <= d <= hi + 1e-9]
        if vals and len(ys):
            out[s] = float(np.mean(vals) - ys.min())
    return out


def _kappa(curv: dict[float, float]) -> tuple[float, tuple[float, float]]:
    """K&B robustness exponent [OURS]: OLS slope of ln c_s on ln s (> 0: an extrapolation error costs more at
    larger scale)."""
    if len(curv) < 2:
        return math.nan, (math.nan, math.nan)
    s = np.log(np.array(list(curv)))
    c = np.log(np.array(list(curv.values())))
    fit = wls(np.column_stack([np.ones_like(s), s]), c)
    ci = fit.ci(1, 0.95) if fit.dof > 0 else (math.nan, math.nan)
    return float(fit.beta[1]), ci


def asymptotic_penalty(opt: pl.DataFrame, axis: str, param: str, ref: str = "mup") -> dict:
    """K&B R(∞) [OURS]: R(s) = L*_param(s)/L*_ref(s) − 1 at the scales both parameterizations share (other slice
    columns equal), fitted as R(s) = R∞ + A·s^(−γ), γ > 0. Needs ≥ 4 shared scales for the fit (3 parameters);
    with fewer only R(s) is returned, with the reason."""
    col = f"scale.{axis}"
    if S.P_PARAMETERIZATION not in opt.columns or col not in opt.columns:
        return {"R": {}, "R_inf": None, "reason": f"no {S.P_PARAMETERIZATION} or {col} column"}
    keys = [c for c in group_columns(opt, axis) if c != S.P_PARAMETERIZATION]
    best = opt.with_columns(pl.col("argmin_loss").alias("_L"))  # observed best: a vertex value can be < 0 near L=0
    a = best.filter(pl.col(S.P_PARAMETERIZATION) == param).select([*keys, col, "_L"])
    b = best.filter(pl.col(S.P_PARAMETERIZATION) == ref).select([*keys, col, pl.col("_L").alias("_Lref")])
    j = a.join(b, on=[*keys, col], how="inner", nulls_equal=True).sort(col)
    R = {float(s): float(x / y - 1) for s, x, y in j.select(col, "_L", "_Lref").iter_rows() if y and y > 0}
    out: dict = {"R": R, "R_inf": None, "A": None, "gamma": None, "reason": None}
    if len(R) < 4:
        out["reason"] = f"{len(R)} shared scales; the R∞ + A·s^-γ fit needs ≥ 4"
        return out
    s = np.array(list(R))
    r = np.array(list(R.values()))
    s_n = s / s.min()  # fit in units of the smallest scale for conditioning
    from scipy import optimize  # here, not at the top: only this fit needs it (module docstring)

    try:
        popt, pcov = optimize.curve_fit(lambda x, rinf, A, g: rinf + A * x ** (-g), s_n, r,
                                        p0=[r[-1], r[0] - r[-1], 0.5], bounds=([-np.inf, -np.inf, 1e-6],
                                                                                [np.inf, np.inf, 10.0]))
    except (RuntimeError, ValueError) as exc:
        out["reason"] = f"fit failed: {exc}"
        return out
    out.update(R_inf=float(popt[0]), R_inf_se=float(math.sqrt(max(pcov[0, 0], 0))) if np.isfinite(pcov[0, 0])
               else math.nan, A=float(popt[1]), gamma=float(popt[2]))
    return out


def differing_keys(results: Sequence[AxisTransfer]) -> list[str]:
    """Group columns whose value differs between the groups: what tells two slices apart (the rest is constant
    across the experiment and only clutters a label)."""
    keys = sorted({k for r in results for k in r.group})
    return [k for k in keys if len({str(r.group.get(k)) for r in results}) > 1]


def verdict_frame(results: Sequence[AxisTransfer]) -> pl.DataFrame:
    """One row per AxisTransfer with the columns the report and dashboard print."""
    rows = []
    for r in results:
        f = r.fit
        rows.append({
            "axis": r.axis, "hp": r.hp, "param": r.group.get(S.P_PARAMETERIZATION),
            "group": ", ".join(f"{k}={v}" for k, v in r.group.items() if k != S.P_PARAMETERIZATION),
            "n_scales": len(set(r.scales)), "n_used": int(sum(r.used)),
            "slope": f.slope if f else None,
            "slope_ci90_lo": f.slope_ci90[0] if f else None, "slope_ci90_hi": f.slope_ci90[1] if f else None,
            "slope_ci95_lo": f.slope_ci95[0] if f else None, "slope_ci95_hi": f.slope_ci95[1] if f else None,
            "tost_eps": r.tost_eps, "max_penalty": r.max_penalty, "E_factor": f.E_factor if f else None,
            "loo_error": f.loo_error if f else None, "kappa": r.kappa, "curved": f.curved if f else None,
            "verdict": r.verdict, "reasons": "; ".join(r.reasons),
        })
    schema = {"axis": pl.Utf8, "hp": pl.Utf8, "param": pl.Utf8, "group": pl.Utf8, "n_scales": pl.Int64,
              "n_used": pl.Int64, "slope": pl.Float64, "slope_ci90_lo": pl.Float64, "slope_ci90_hi": pl.Float64,
              "slope_ci95_lo": pl.Float64, "slope_ci95_hi": pl.Float64, "tost_eps": pl.Float64,
              "max_penalty": pl.Float64, "E_factor": pl.Float64, "loo_error": pl.Float64, "kappa": pl.Float64,
              "curved": pl.Boolean, "verdict": pl.Utf8, "reasons": pl.Utf8}
    return pl.DataFrame(rows, schema=schema)
