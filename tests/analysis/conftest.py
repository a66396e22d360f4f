"""Fixtures for the analysis tests: the μP demo data imported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.importers import ImportedSweep, import_long_table

MUP_DIR = Path(__file__).resolve().parent.parent / "data" / "mup_demo_mlp"
MUP_CSV = MUP_DIR / "mup_demo_mlp_cifar10_lr_sweep.csv"
MUP_MAPPING = MUP_DIR / "mapping.yaml"


@pytest.fixture(scope="session")
def mup_sweep() -> ImportedSweep:
    return import_long_table(MUP_CSV, MUP_MAPPING)
