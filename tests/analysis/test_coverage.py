"""Statistical calibration on synthetic data with a known truth (200 draws each, vectorised where it matters)."""

from __future__ import annotations

import math

import numpy as np

from analysis.optimum import batched_vertex, fit_optimum_1d
from analysis.transfer import fit_power_law

N_DRAWS = 200


def _curve_draw(rng: np.random.Generator, seeds: int) -> tuple[float, np.ndarray, np.ndarray]:
    """A loss curve quadratic in ln lr with its optimum at a random place between grid points."""
    x0 = math.log(3e-3) + rng.uniform(-0.35, 0.35)
    grid = math.log(3e-3) + math.log(2) * np.arange(-5, 6)
    x = np.repeat(grid, seeds)
    loss = 3.0 * (1 + 0.04 * (x - x0) ** 2) + 0.01 * rng.standard_normal(x.size)
    return x0, np.exp(x), loss


def test_quadratic_optimum_is_unbiased_and_covers_single_seed():
    rng = np.random.default_rng(1)
    errs, covered, ses = [], 0, []
    for _ in range(N_DRAWS):
        x0, lr, loss = _curve_draw(rng, seeds=1)
        fit = fit_optimum_1d(lr, loss, n_boot=0)
        assert fit.method == "quadratic"
        errs.append(fit.log_opt - x0)
        ses.append(fit.se_log)
        covered += fit.ci95[0] <= math.exp(x0) <= fit.ci95[1]
    errs = np.array(errs)
    assert covered / N_DRAWS >= 0.90
    # unbiased: the mean error is within 3 standard errors of the mean (and tiny next to the per-fit SE)
    assert abs(errs.mean()) < 3 * errs.std(ddof=1) / math.sqrt(N_DRAWS)
    assert abs(errs.mean()) < 0.25 * np.mean(ses)


def test_quadratic_optimum_covers_with_seeds_and_bootstrap_agrees():
    rng = np.random.default_rng(2)
    covered, boot_covered = 0, 0
    for _ in range(N_DRAWS):
        x0, lr, loss = _curve_draw(rng, seeds=3)
        fit = fit_optimum_1d(lr, loss, n_boot=200, rng=rng)
        assert fit.n_seeds == 3
        covered += fit.ci95[0] <= math.exp(x0) <= fit.ci95[1]
        boot_covered += fit.boot_ci95[0] <= math.exp(x0) <= fit.boot_ci95[1]
    assert covered / N_DRAWS >= 0.90
    # The seed bootstrap with 3 seeds is known to be narrow; it is reported, not used for the interval.
    assert boot_covered / N_DRAWS >= 0.6


def test_batched_vertex_matches_single_fits():
    rng = np.random.default_rng(3)
    grid = np.log(2) * np.arange(-5, 6)
    means = 3 * (1 + 0.04 * (grid[None, :] - rng.uniform(-1, 1, (50, 1))) ** 2) + 0.01 * rng.standard_normal((50, 11))
    est, _ = batched_vertex(grid, means, 5)
    single = [fit_optimum_1d(np.exp(grid), m, n_boot=0).log_opt for m in means]
    np.testing.assert_allclose(est, single, atol=1e-5)  # single fits snap ln(hp) to 1e-6


def test_power_law_slope_interval_covers():
    rng = np.random.default_rng(4)
    scales = np.array([64, 128, 256, 512, 1024.0])
    true_slope, covered, covered90, slopes = -0.5, 0, 0, []
    for _ in range(N_DRAWS):
        se = rng.uniform(0.05, 0.15, scales.size)
        scatter = 0.05 * rng.standard_normal(scales.size)  # between-scale scatter the SEs do not know about
        y = 1.0 + true_slope * np.log(scales) + se * rng.standard_normal(scales.size) + scatter
        fit = fit_power_law(scales, y, se)
        covered += fit.slope_ci95[0] <= true_slope <= fit.slope_ci95[1]
        covered90 += fit.slope_ci90[0] <= true_slope <= fit.slope_ci90[1]
        slopes.append(fit.slope)
    assert covered / N_DRAWS >= 0.90
    assert covered90 / N_DRAWS >= 0.85
    assert abs(np.mean(slopes) - true_slope) < 3 * np.std(slopes) / math.sqrt(N_DRAWS)
