"""analysis/ computes its Akima curves and t/normal quantiles without importing scipy.interpolate or scipy.stats (a
dashboard process would pay ~0.5 s for the imports); these tests hold the numbers to exactly what those modules give,
on random curves and on the μP demo's real ones."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.interpolate import Akima1DInterpolator, interp1d

from analysis.classify import prepare_runs
from analysis.optimum import fit_optimum_1d, optimum_table
from analysis.transfer import LinearFit, _interp
from trainer import schema as S

LOG_GRID = np.round(np.log(2.0 ** np.arange(-14, -1, 0.5)), 6)


def scipy_curve(xs: np.ndarray, ys: np.ndarray):  # noqa: ANN201 - a scipy interpolator
    return Akima1DInterpolator(xs, ys) if len(xs) >= 3 else interp1d(xs, ys)


def assert_same_curve(xs: np.ndarray, ys: np.ndarray) -> None:
    at = np.concatenate([np.linspace(xs[0], xs[-1], 512), xs])
    assert np.array_equal(_interp(xs, ys)(at), scipy_curve(xs, ys)(at))
    for x in at[::41]:  # scalars, as transfer.loss_at reads the curve
        assert float(_interp(xs, ys)(x)) == float(scipy_curve(xs, ys)(x))


def test_akima_matches_scipy_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    for trial in range(500):
        n = int(rng.integers(2, 15))
        xs = np.sort(rng.choice(LOG_GRID, n, replace=False))
        ys = rng.normal(3.0, 0.3, n) if trial % 2 else 3.0 + 0.02 * (xs - xs.mean()) ** 2
        if trial % 5 == 0:
            ys[: n // 2 + 1] = ys[0]  # flat stretches: Akima's both-weights-zero case
        assert_same_curve(xs, ys)
    assert _interp(LOG_GRID[:1], np.ones(1)) is None


def test_akima_matches_scipy_on_the_mup_demo_curves(mup_sweep) -> None:  # noqa: ANN001 - fixture
    table = optimum_table(prepare_runs(mup_sweep.runs, history=mup_sweep.history), S.P_LR, n_boot=0)
    curves = [(np.array(x), np.array(y)) for x, y in zip(table["grid_log_hp"], table["grid_loss"], strict=True)
              if len(x) >= 2]
    assert len(curves) == table.height == 12
    for xs, ys in curves:
        assert_same_curve(xs, ys)


@pytest.mark.parametrize("level", [0.68, 0.90, 0.95])
def test_quantiles_match_scipy_stats(level: float) -> None:
    p = 0.5 + level / 2
    for dof in range(0, 60):
        fit = LinearFit(np.zeros(2), np.eye(2), dof, math.nan, 1.0, np.ones(3), np.zeros(3))
        assert fit.quantile(level) == float(stats.t.ppf(p, dof) if dof > 0 else stats.norm.ppf(p))


def test_optimum_intervals_use_the_t_quantile_of_scipy_stats(mup_sweep) -> None:  # noqa: ANN001 - fixture
    runs = prepare_runs(mup_sweep.runs, history=mup_sweep.history)
    part = runs.filter((pl.col(S.P_PARAMETERIZATION) == "mup") & (pl.col("scale.width") == 1024)
                       & pl.col("status").is_in(["ok", "diverged"]))
    fit = fit_optimum_1d(part[S.P_LR].to_numpy(), part["loss"].fill_null(math.nan).to_numpy(),
                         (part["status"] == "diverged").to_numpy(), n_boot=0)
    assert fit.method == "quadratic" and fit.dof > 0
    for name, level in (("ci68", 0.68), ("ci95", 0.95)):
        t = stats.t.ppf(0.5 + level / 2, fit.dof)
        assert getattr(fit, name) == (math.exp(fit.log_opt - t * fit.se_log), math.exp(fit.log_opt + t * fit.se_log))
