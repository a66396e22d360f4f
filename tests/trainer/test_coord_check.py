"""Coordinate check on CPU: μP/CompleteP activations change flatly in width, SP's grow (spec §8.2)."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_config
from trainer.coord_check import run_coord_check
from trainer.coord_stats import format_table, growth_exponent


def test_width_coord_check_mup_flat_sp_growing() -> None:
    rows = run_coord_check(tiny_config(**{"train.batch_size": 4}), "width", [32, 64, 128, 256],
                           ["sp", "mup", "completep"], steps=4, lr=2e-2)
    last = 3
    for module in ("attn_o", "mlp_down", "resid", "logits"):
        sp = growth_exponent(rows, "sp", module, last)
        assert sp > 0.5, (module, sp)  # Θ(width) growth of the update's effect in SP
        for p in ("mup", "completep"):
            slope = growth_exponent(rows, p, module, last)
            assert abs(slope) < 0.25, (p, module, slope)
    # activations at init are O(1) in width for every parameterization
    assert abs(growth_exponent(rows, "mup", "resid", 0, key="act")) < 0.1
    assert "logits" in format_table(rows, "width")


def test_depth_coord_check_completep_flat_mup_growing() -> None:
    """CompleteP's m_L^-α residual keeps the residual stream's update O(1) in depth; μP without it grows.

    Ten steps, not four: over the very first steps the blocks' updates are still nearly uncorrelated, so L branch
    changes of size 1/L add up to L^-½ and the α = 1 curve dips before it settles flat.
    """
    rows = run_coord_check(tiny_config(**{"model.width": 64}), "depth", [2, 4, 8, 16], ["mup", "completep"],
                           steps=10, lr=1e-2)
    mup = growth_exponent(rows, "mup", "resid", 9)
    cp = growth_exponent(rows, "completep", "resid", 9)
    assert mup > 0.5, mup
    assert abs(cp) < 0.2, cp


def test_coord_check_rejects_unknown_parameterization() -> None:
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="param.name"):
        run_coord_check(tiny_config(), "width", [32, 64], ["ntk"], steps=2)
