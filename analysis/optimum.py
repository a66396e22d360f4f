"""The optimum of one hyperparameter within one slice (everything else fixed), with uncertainty and edge flags.

Spec §6.2–6.3. The estimator is a local quadratic in x = ln(hp) through the ``window`` grid points centred on the
discrete argmin; its vertex is the optimum and the delta method gives its standard error. Replicates (seeds) are
fitted as raw points, so seed noise enters the residual variance; a bootstrap over seeds (or, with one seed, a
parametric noise bootstrap) gives a second interval and the edge fraction of rule 4. Diverged runs are censored:
never a number in the fit, but a valid high-side bracket (§6.1, §6.3 rule 5).

All log quantities are natural logs; slopes in log-log are base-free, so they equal log2–log2 slopes.

t quantiles come from ``scipy.special.stdtrit``, the function ``scipy.stats.t.ppf`` evaluates (same numbers):
importing scipy.special costs ~0.25 s, scipy.stats ~0.75 s, and every dashboard process pays the import on its
first page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from scipy import special

from analysis.classify import slice_columns
from trainer import schema as S

FLAGS = ("edge_low", "edge_high", "ill_conditioned", "extrapolated_vertex", "near_stability_edge",
         "too_few_points", "no_data")
EDGE_FLAGS = ("edge_low", "edge_high")
UNUSABLE_FLAGS = ("edge_low", "edge_high", "ill_conditioned", "too_few_points", "no_data")


@dataclass
class Optimum1D:
    """One slice's optimum. hp values are in the hyperparameter's own units; ``*_log`` are natural logs.

    ``opt`` is the quadratic vertex when the fit is usable (method ``quadratic``), else the discrete argmin
    (method ``argmin``); ``se_log`` is then NaN and no interval is claimed. ``curvature`` is the x² coefficient
    of ln L in the same window, so the relative loss penalty of a log-error ε is ≈ curvature·ε² (c_s of §1 κ).
    ``lowest_diverged`` bounds the stable range (η_max_stable, §6.1). ``suggested`` lists hp values that would
    widen the grid where it is not bracketed."""

    n_points: int = 0
    n_runs: int = 0
    n_seeds: int = 0
    n_diverged: int = 0
    argmin: float = math.nan
    argmin_loss: float = math.nan
    opt: float = math.nan
    log_opt: float = math.nan
    se_log: float = math.nan
    ci68: tuple[float, float] = (math.nan, math.nan)
    ci95: tuple[float, float] = (math.nan, math.nan)
    vertex_log: float = math.nan
    loss_opt: float = math.nan
    curvature: float = math.nan
    dof: int = 0
    boot_se_log: float = math.nan
    boot_ci95: tuple[float, float] = (math.nan, math.nan)
    boot_frac_low: float = math.nan  # fraction of bootstrap argmins at the lowest grid value (§6.3 rule 4)
    boot_frac_high: float = math.nan
    method: str = "none"
    lowest_diverged: float = math.nan
    flags: list[str] = field(default_factory=list)
    edge_reasons: list[str] = field(default_factory=list)
    suggested: list[float] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True when the estimate may enter a scaling fit: a real quadratic vertex and no edge/conditioning flag."""
        return self.method == "quadratic" and not any(f in UNUSABLE_FLAGS for f in self.flags)


def fit_optimum_1d(hp: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray,
                   censored: Sequence[bool] | np.ndarray | None = None, *, window: int = 5,
                   bracket_delta: float = 0.005, n_boot: int = 1000, boot_edge_frac: float = 0.2,
                   rng: np.random.Generator | int | None = 0) -> Optimum1D:
    """Optimum of loss over ln(hp) for one slice (spec §6.2, edge rules §6.3).

    ``hp``: the hyperparameter of each run (replicates share a value); ``loss``: the objective (NaN for censored
    runs); ``censored``: True for diverged runs. Values of hp that agree to 1e-6 in ln are one grid point (the
    spec's 'snap to the nominal grid' for float-rounded LRs)."""
    hp = np.asarray(hp, dtype=float)
    loss = np.asarray(loss, dtype=float)
    cens = np.zeros(hp.shape, bool) if censored is None else np.asarray(censored, dtype=bool)
    x_all = np.round(np.log(hp), 6)
    ok = ~cens & np.isfinite(loss) & np.isfinite(x_all)
    res = Optimum1D(n_runs=int(ok.sum()), n_diverged=int(cens.sum()))
    x, y = x_all[ok], loss[ok]
    grid, inv = np.unique(x, return_inverse=True)
    res.n_points = len(grid)
    if len(grid) == 0:
        res.flags.append("no_data")
        return res
    counts = np.bincount(inv, minlength=len(grid))
    means = np.bincount(inv, weights=y, minlength=len(grid)) / counts
    res.n_seeds = int(counts.max())
    i = int(np.argmin(means))
    res.argmin, res.argmin_loss = float(np.exp(grid[i])), float(means[i])
    res.opt, res.log_opt, res.method = res.argmin, float(grid[i]), "argmin"
    div_x = np.unique(x_all[cens & np.isfinite(x_all)])
    above = div_x[div_x > grid[i]]
    if above.size:
        res.lowest_diverged = float(np.exp(above.min()))
    full = np.unique(np.concatenate([grid, div_x]))  # every attempted grid value, censored included
    if len(grid) < 3:
        res.flags.append("too_few_points")
    else:
        _quadratic(res, grid, means, x, y, i, window)
        _bootstrap(res, grid, x, y, inv, counts, window, n_boot, rng)
    _edge_flags(res, grid, means, full, div_x, i, bracket_delta, boot_edge_frac)
    return res


def _window(n: int, i: int, window: int) -> tuple[int, int]:
    lo = min(max(i - window // 2, 0), max(n - window, 0))
    return lo, min(lo + window, n)


def _quadratic(res: Optimum1D, grid: np.ndarray, means: np.ndarray, x: np.ndarray, y: np.ndarray, i: int,
               window: int) -> None:
    """Local quadratic around the argmin; vertex and delta-method SE (spec §6.2 item 2)."""
    lo, hi = _window(len(grid), i, window)
    sel = (x >= grid[lo]) & (x <= grid[hi - 1])
    u = x[sel] - grid[i]  # centred for conditioning
    X = np.column_stack([u * u, u, np.ones_like(u)])
    coef, _, rank, _ = np.linalg.lstsq(X, y[sel], rcond=None)
    a, b, c = coef
    dof = int(sel.sum()) - 3
    res.dof = dof
    if rank < 3 or not a > 0:
        res.flags.append("ill_conditioned")  # flat or concave: no minimum to estimate (§6.2: fall back to argmin)
        return
    u_star = -b / (2 * a)
    res.vertex_log = float(grid[i] + u_star)
    res.loss_opt = float(c - b * b / (4 * a))
    if (y[sel] > 0).all():
        # c_s of spec §1 (κ): the same window fitted in ln L, so L/L* − 1 ≈ c_s·ε² holds even where L* ≈ 0
        a_ln = np.linalg.lstsq(X, np.log(y[sel]), rcond=None)[0][0]
        res.curvature = float(a_ln) if a_ln > 0 else math.nan
    left, right = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if not left <= res.vertex_log <= right:
        res.flags.append("extrapolated_vertex")
    if not grid[0] <= res.vertex_log <= grid[-1]:
        return  # a vertex beyond the data is not an estimate; the edge rules flag it (§6.3 rule 3)
    res.method, res.log_opt, res.opt = "quadratic", res.vertex_log, float(math.exp(res.vertex_log))
    if dof <= 0:
        return
    rss = float(np.sum((y[sel] - X @ coef) ** 2))
    s2 = rss / dof
    cov = s2 * np.linalg.inv(X.T @ X)
    g = np.array([b / (2 * a * a), -1 / (2 * a)])  # ∂x*/∂a, ∂x*/∂b
    se = float(np.sqrt(max(g @ cov[:2, :2] @ g, 0.0)))
    res.se_log = se
    for name, level in (("ci68", 0.68), ("ci95", 0.95)):
        t = special.stdtrit(dof, 0.5 + level / 2)  # = scipy.stats.t.ppf(0.5 + level / 2, dof)
        setattr(res, name, (float(math.exp(res.log_opt - t * se)), float(math.exp(res.log_opt + t * se))))


def batched_vertex(grid: np.ndarray, means: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised local-quadratic vertex for many loss curves on one grid (rows of ``means``).

    Returns (estimate of ln hp, argmin index) per row; where the quadratic is concave or its vertex leaves the
    grid the estimate is the discrete argmin, as in the single fit. Used by the bootstrap and the coverage tests."""
    means = np.atleast_2d(means)
    n = len(grid)
    idx = np.argmin(means, axis=1)
    lo = np.clip(idx - window // 2, 0, max(n - window, 0))
    w = min(window, n)
    cols = lo[:, None] + np.arange(w)[None, :]
    u = grid[cols] - grid[idx][:, None]
    yy = np.take_along_axis(means, cols, axis=1)
    powers = np.stack([u ** k for k in range(5)], axis=-1).sum(axis=1)  # Σu^0..Σu^4
    rhs = np.stack([(u ** 2 * yy).sum(1), (u * yy).sum(1), yy.sum(1)], axis=-1)
    A = np.stack([np.stack([powers[:, 4], powers[:, 3], powers[:, 2]], -1),
                  np.stack([powers[:, 3], powers[:, 2], powers[:, 1]], -1),
                  np.stack([powers[:, 2], powers[:, 1], powers[:, 0]], -1)], axis=1)
    det = np.linalg.det(A)
    good = np.abs(det) > 1e-12
    coef = np.zeros((len(means), 3))
    coef[good] = np.linalg.solve(A[good], rhs[good][..., None])[..., 0]
    a, b = coef[:, 0], coef[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = grid[idx] - b / (2 * a)
    fine = good & (a > 0) & (vertex >= grid[0]) & (vertex <= grid[-1])
    return np.where(fine, vertex, grid[idx]), idx


def _bootstrap(res: Optimum1D, grid: np.ndarray, x: np.ndarray, y: np.ndarray, inv: np.ndarray,
               counts: np.ndarray, window: int, n_boot: int, rng: np.random.Generator | int | None) -> None:
    """Seeds: resample replicates within each grid point. One seed: parametric noise L + σ·ε with σ the residual
    SD of the local fit (spec §6.2 item 5). Gives boot SE/CI and the fraction of argmins at a grid end (rule 4)."""
    if n_boot <= 0:
        return
    gen = np.random.default_rng(rng)
    n = len(grid)
    if counts.max() >= 2:
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        ys = y[order]
        draws = gen.random((n_boot, len(y)))
        pick = starts[inv[order]][None, :] + np.floor(draws * counts[inv[order]][None, :]).astype(int)
        # the resampled values are ordered by grid point, so one segment sum per point (reduceat: ~15x faster
        # than np.add.at, and equal to it up to float rounding)
        means = np.add.reduceat(ys[pick], starts, axis=1) / counts[None, :]
    else:
        if not res.dof > 0 or res.method != "quadratic":
            return
        base = np.bincount(inv, weights=y, minlength=n) / counts
        lo, hi = _window(n, int(np.argmin(base)), window)
        sel = (x >= grid[lo]) & (x <= grid[hi - 1])
        u = x[sel] - grid[int(np.argmin(base))]
        X = np.column_stack([u * u, u, np.ones_like(u)])
        coef = np.linalg.lstsq(X, y[sel], rcond=None)[0]
        sigma = math.sqrt(float(np.sum((y[sel] - X @ coef) ** 2)) / res.dof)
        means = base[None, :] + sigma * gen.standard_normal((n_boot, n))
    est, idx = batched_vertex(grid, means, window)
    res.boot_se_log = float(np.std(est, ddof=1))
    res.boot_ci95 = (float(np.exp(np.quantile(est, 0.025))), float(np.exp(np.quantile(est, 0.975))))
    res.boot_frac_low, res.boot_frac_high = float(np.mean(idx == 0)), float(np.mean(idx == n - 1))


def _edge_flags(res: Optimum1D, grid: np.ndarray, means: np.ndarray, full: np.ndarray, div_x: np.ndarray, i: int,
                delta: float, boot_edge_frac: float) -> None:
    """Spec §6.3 rules 1–5 on the grid of attempted values (a diverged run above counts as a bracket)."""
    low, high = [], []
    x_i = grid[i]
    diverged_above = bool((div_x > x_i).any())
    # rule 1: the argmin is the first or last attempted point
    if x_i == full[0]:
        low.append("argmin at the lowest grid value")
    if x_i == full[-1]:
        high.append("argmin at the highest grid value")
    # rules 2+3 (Porian on_edge; vertex outside the sampled range)
    if not math.isnan(res.vertex_log) and len(full) >= 3:
        if res.vertex_log < full[1]:
            low.append("vertex below the 2nd grid value")
        if res.vertex_log > full[-2] and not diverged_above:
            high.append("vertex above the 2nd-to-last grid value")
    # rule 4: bootstrap argmins at an end
    if res.boot_frac_low > boot_edge_frac:
        low.append(f"{res.boot_frac_low:.0%} of bootstrap argmins at the low end")
    if res.boot_frac_high > boot_edge_frac and not diverged_above:
        high.append(f"{res.boot_frac_high:.0%} of bootstrap argmins at the high end")
    # rule 5: bracket test, a point at least delta worse on each side (diverged counts on the high side)
    thresh = means[i] * (1 + delta)
    if not (means[grid < x_i] >= thresh).any():
        low.append(f"no point ≥ {delta:.1%} worse below the argmin")
    if not (means[grid > x_i] >= thresh).any() and not diverged_above:
        high.append(f"no point ≥ {delta:.1%} worse above the argmin")
    if diverged_above:
        nxt = full[full > x_i]
        if nxt.size and nxt[0] in div_x:
            res.flags.append("near_stability_edge")
    step = float(np.median(np.diff(full))) if len(full) >= 2 else math.log(2)
    if low:
        res.flags.insert(0, "edge_low")
        res.suggested += [float(math.exp(full[0] - k * step)) for k in (3, 2, 1)]
    if high:
        res.flags.insert(0 if not low else 1, "edge_high")
        res.suggested += [float(math.exp(full[-1] + k * step)) for k in (1, 2, 3)]
    res.edge_reasons = low + high


# ---------------------------------------------------------------------------------------------------------------
# Tables over all slices
# ---------------------------------------------------------------------------------------------------------------

OPTIMUM_COLUMNS = {
    "hp": "the swept hyperparameter (hp.lr or mult.<kind>.<module>)",
    "opt, log_opt": "estimated optimum (hp units, natural log)",
    "se_log": "delta-method SE of ln opt (NaN when method is argmin)",
    "ci68_lo … ci95_hi": "intervals of opt (t quantiles with the fit's dof)",
    "argmin, argmin_loss": "discrete argmin over the mean loss per grid value",
    "method": "quadratic | argmin | none",
    "curvature": "relative loss penalty per (ln hp error)^2",
    "flags, edge_reasons, suggested": "§6.3 flags, why, grid values to add",
    "usable": "may enter a scaling fit (quadratic, no edge/conditioning flag)",
    "grid_log_hp, grid_loss, grid_n, diverged_log_hp": "the slice's curve (mean per grid value) for plots/penalties",
    "run_ids": "ok runs of the slice (evidence)",
    "n_params_non_emb, n_params": "derived parameter counts of the slice (N of the scaling law)",
    "initial_loss": "median summary.initial_loss of the slice (ℓ₀ of the LR sensitivity)",
}


def optimum_table(prepared: pl.DataFrame, hp: str = "hp.lr", *, slice_cols: Sequence[str] | None = None,
                  n_boot: int = 1000, seed: int = 0, **fit_kw: float) -> pl.DataFrame:
    """One row per slice of ``prepared`` (output of classify.prepare_runs) over ``hp``; columns in
    OPTIMUM_COLUMNS plus the slice columns. Slices with no ok run still appear (flag no_data) so the dashboard can
    show that a cell exists but has nothing to fit."""
    if hp not in prepared.columns:
        raise KeyError(f"{hp} is not a column of the run table")
    keys = list(slice_cols) if slice_cols is not None else slice_columns(prepared, hp)
    keys = [k for k in keys if prepared[k].drop_nulls().n_unique() >= 1] or []
    df = prepared.filter(pl.col("status").is_in(["ok", "diverged"])).with_columns(
        pl.col(hp).cast(pl.Float64, strict=False).alias("_hp"))
    rows = []
    groups = df.group_by(keys, maintain_order=True) if keys else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        fit = fit_optimum_1d(part["_hp"].to_numpy(), part["loss"].fill_null(math.nan).to_numpy(),
                             (part["status"] == "diverged").to_numpy(), n_boot=n_boot, rng=seed, **fit_kw)
        ok = part.filter(pl.col("status") == "ok")
        curve = (ok.with_columns(grid_value(pl.col("_hp")).alias("_x")).group_by("_x")
                 .agg(pl.col("loss").mean().alias("_m"), pl.len().alias("_n")).sort("_x"))
        row = dict(zip(keys, key, strict=True))
        init = (part[S.S_INITIAL_LOSS].cast(pl.Float64, strict=False) if S.S_INITIAL_LOSS in part.columns
                else pl.Series([], dtype=pl.Float64))
        init = init.filter(init.is_finite())
        row["initial_loss"] = float(init.median()) if len(init) else math.nan  # ℓ₀ for the LR sensitivity
        for name, col in (("n_params_non_emb", S.P_N_PARAMS_NON_EMB), ("n_params", S.P_N_PARAMS)):
            vals = part[col].cast(pl.Float64, strict=False).drop_nulls() if col in part.columns else []
            row[name] = float(vals[0]) if len(vals) else math.nan  # N of the scaling law (constant per slice)
        d = asdict(fit)
        row.update(hp=hp, **{k: v for k, v in d.items() if k not in ("ci68", "ci95", "boot_ci95")},
                   ci68_lo=fit.ci68[0], ci68_hi=fit.ci68[1], ci95_lo=fit.ci95[0], ci95_hi=fit.ci95[1],
                   boot_ci95_lo=fit.boot_ci95[0], boot_ci95_hi=fit.boot_ci95[1], usable=fit.usable,
                   grid_log_hp=curve["_x"].to_list(), grid_loss=curve["_m"].to_list(),
                   grid_n=curve["_n"].to_list(),
                   diverged_log_hp=sorted(set(np.round(np.log(part.filter(pl.col("status") == "diverged")["_hp"]
                                                              .to_numpy()), 6).tolist())),
                   run_ids=ok["run_id"].to_list() if "run_id" in ok.columns else [])
        rows.append(row)
    schema_over = {"flags": pl.List(pl.Utf8), "edge_reasons": pl.List(pl.Utf8), "suggested": pl.List(pl.Float64),
                   "grid_log_hp": pl.List(pl.Float64), "grid_loss": pl.List(pl.Float64),
                   "grid_n": pl.List(pl.Int64), "diverged_log_hp": pl.List(pl.Float64),
                   "run_ids": pl.List(pl.Utf8)}
    if not rows:
        return pl.DataFrame(schema={**{k: prepared.schema[k] for k in keys}, "hp": pl.Utf8, **schema_over})
    return pl.DataFrame(rows, schema_overrides=schema_over, infer_schema_length=None)


def grid_value(hp: pl.Expr) -> pl.Expr:
    """The grid value of a run: ln hp rounded to 1e-6, so float-rounded LRs are one point (as in fit_optimum_1d).
    optimum_table's curves and loss_band group by it, so a band lines up with its mean curve."""
    return hp.cast(pl.Float64, strict=False).log().round(6)


def loss_band(prepared: pl.DataFrame, hp: str = "hp.lr", by: Sequence[str] = ()) -> pl.DataFrame:
    """The spread of the ok runs' loss at each grid value of ``hp``, per group of the ``by`` columns: columns
    ``*by``, ``grid_log_hp`` (as optimum_table's), ``loss_lo`` and ``loss_hi`` (lowest and highest loss over the
    runs there, i.e. over seeds when ``by`` holds the slice columns), ``n`` (how many); sorted by ``*by`` and grid
    value.

    Why the extremes and not an interval: the band shows where the replicates actually landed around the slice's
    mean curve (grid_loss), without a distributional claim at 2–10 seeds; with one run per point it collapses onto
    the curve."""
    by = list(by)
    schema = {**{k: prepared.schema[k] for k in by if k in prepared.columns}, "grid_log_hp": pl.Float64,
              "loss_lo": pl.Float64, "loss_hi": pl.Float64, "n": pl.UInt32}
    if hp not in prepared.columns or "loss" not in prepared.columns or any(k not in prepared.columns for k in by):
        return pl.DataFrame(schema=schema)
    cells = [*by, "grid_log_hp"]
    return (prepared.filter((pl.col("status") == "ok") & pl.col("loss").is_not_null())
            .with_columns(grid_value(pl.col(hp)).alias("grid_log_hp"))
            .filter(pl.col("grid_log_hp").is_finite())
            .group_by(cells).agg(pl.col("loss").min().alias("loss_lo"), pl.col("loss").max().alias("loss_hi"),
                                 pl.len().alias("n"))
            .sort(cells).cast(schema))


# ---------------------------------------------------------------------------------------------------------------
# 2-D optimum over (ln lr, ln batch), spec §6.2 item 4
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Optimum2D:
    """Joint optimum of (lr, batch). ``positive_definite`` is the Hessian check; without it the vertex is a saddle
    or a ridge and ``lr``/``batch`` fall back to the discrete argmin (method ``argmin``)."""

    lr: float = math.nan
    batch: float = math.nan
    se_log_lr: float = math.nan
    se_log_batch: float = math.nan
    corr: float = math.nan
    argmin_lr: float = math.nan
    argmin_batch: float = math.nan
    argmin_loss: float = math.nan
    hessian_eigenvalues: tuple[float, float] = (math.nan, math.nan)
    positive_definite: bool = False
    n_points: int = 0
    n_fit: int = 0
    method: str = "none"
    flags: list[str] = field(default_factory=list)


def fit_optimum_2d(lr: Sequence[float], batch: Sequence[float], loss: Sequence[float],
                   censored: Sequence[bool] | None = None, *, near: float = 0.01, min_points: int = 8) -> Optimum2D:
    """Quadratic surface in (ln lr, ln B) through the points within ``near`` (1 %) of the best mean loss, widened to
    the ``min_points`` best when fewer qualify; Hessian positive-definite check; optimum −H⁻¹∇ with a
    delta-method covariance (numerical Jacobian)."""
    lr, batch, loss = (np.asarray(v, dtype=float) for v in (lr, batch, loss))
    cens = np.zeros(lr.shape, bool) if censored is None else np.asarray(censored, bool)
    ok = ~cens & np.isfinite(loss) & (lr > 0) & (batch > 0)
    res = Optimum2D()
    if not ok.any():
        res.flags.append("no_data")
        return res
    pts = pl.DataFrame({"x": np.round(np.log(lr[ok]), 6), "z": np.round(np.log(batch[ok]), 6), "y": loss[ok]})
    cells = pts.group_by("x", "z").agg(pl.col("y").mean()).sort("y")
    res.n_points = cells.height
    best = cells.row(0, named=True)
    res.argmin_lr, res.argmin_batch, res.argmin_loss = math.exp(best["x"]), math.exp(best["z"]), best["y"]
    res.lr, res.batch, res.method = res.argmin_lr, res.argmin_batch, "argmin"
    if cells["x"].n_unique() < 3 or cells["z"].n_unique() < 3:
        res.flags.append("too_few_points")
        return res
    chosen = cells.filter(pl.col("y") <= best["y"] * (1 + near))
    if chosen.height < min_points:
        chosen = cells.head(min(min_points, cells.height))
    res.n_fit = chosen.height
    x0, z0 = best["x"], best["z"]
    u, v, y = chosen["x"].to_numpy() - x0, chosen["z"].to_numpy() - z0, chosen["y"].to_numpy()
    X = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    if len(y) <= 6 or np.linalg.matrix_rank(X) < 6:
        res.flags.append("ill_conditioned")
        return res
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - 6
    cov = float(np.sum((y - X @ coef) ** 2)) / dof * np.linalg.inv(X.T @ X)

    def vertex(c: np.ndarray) -> np.ndarray:
        H = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
        return -np.linalg.solve(H, c[1:3])

    H = np.array([[2 * coef[3], coef[4]], [coef[4], 2 * coef[5]]])
    eig = np.linalg.eigvalsh(H)
    res.hessian_eigenvalues = (float(eig[0]), float(eig[1]))
    res.positive_definite = bool(eig.min() > 0)
    if not res.positive_definite:
        res.flags.append("ill_conditioned")
        return res
    opt = vertex(coef)
    J = np.zeros((2, 6))
    for k in range(6):
        h = 1e-6 * max(1.0, abs(coef[k]))
        cp = coef.copy()
        cp[k] += h
        J[:, k] = (vertex(cp) - opt) / h
    ocov = J @ cov @ J.T
    lx, lz = x0 + opt[0], z0 + opt[1]
    xs, zs = cells["x"].to_numpy(), cells["z"].to_numpy()
    if lx < xs.min() or lx > xs.max() or lz < zs.min() or lz > zs.max():
        res.flags.append("edge_low" if (lx < xs.min() or lz < zs.min()) else "edge_high")
        return res
    res.lr, res.batch, res.method = math.exp(lx), math.exp(lz), "quadratic"
    res.se_log_lr, res.se_log_batch = float(math.sqrt(max(ocov[0, 0], 0))), float(math.sqrt(max(ocov[1, 1], 0)))
    if res.se_log_lr > 0 and res.se_log_batch > 0:
        res.corr = float(ocov[0, 1] / (res.se_log_lr * res.se_log_batch))
    return res


def optimum_2d_table(prepared: pl.DataFrame, lr: str = "hp.lr", batch: str = "scale.batch",
                     **fit_kw: float) -> pl.DataFrame:
    """One row per slice over (lr, batch): the Optimum2D fields plus the slice columns (which now exclude the
    batch axis). ``scale.tokens`` stays a slice column, so B* is found at a fixed token budget."""
    keys = [k for k in slice_columns(prepared, lr) if k != batch]
    df = prepared.filter(pl.col("status").is_in(["ok", "diverged"]))
    rows = []
    groups = df.group_by(keys, maintain_order=True) if keys else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        fit = fit_optimum_2d(part[lr].cast(pl.Float64, strict=False).to_numpy(),
                             part[batch].cast(pl.Float64, strict=False).to_numpy(),
                             part["loss"].fill_null(math.nan).to_numpy(), (part["status"] == "diverged").to_numpy(),
                             **fit_kw)
        d = asdict(fit)
        eig = d.pop("hessian_eigenvalues")
        rows.append({**dict(zip(keys, key, strict=True)), **d, "hess_eig_min": eig[0], "hess_eig_max": eig[1]})
    if not rows:
        return pl.DataFrame(schema={k: prepared.schema[k] for k in keys})
    return pl.DataFrame(rows, schema_overrides={"flags": pl.List(pl.Utf8)}, infer_schema_length=None)
