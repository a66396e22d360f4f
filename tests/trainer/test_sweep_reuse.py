"""Editing a sweep spec (another seed, a wider grid) must not retrain the configs it shares with the old spec: the
edited spec is a new sweep id, but finished runs of the same config hash in the experiment are reused."""

from __future__ import annotations

from pathlib import Path

from tests.trainer.test_sweep import TINY_BASE, _children, write_spec
from trainer import schema, sweep
from trainer.executors import SequentialExecutor


def test_an_extended_spec_trains_only_its_new_configs(tmp_path: Path, store_uri: str) -> None:
    old = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02]}))
    assert sweep.run_sweep(old, store_uri, SequentialExecutor(), say=lambda _: None).counts == {schema.STATUS_OK: 2}

    wider = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02, 0.04]}, seeds=[0, 1]))
    assert wider.sweep_id != old.sweep_id
    dry = sweep.describe_plan(wider, store_uri)
    assert dry[0].endswith("6 configs, 2 already finished (skipped; 2 of them by another sweep of the experiment), "
                           "4 to run")
    lines: list[str] = []
    outcome = sweep.run_sweep(wider, store_uri, SequentialExecutor(), say=lines.append)
    assert outcome.counts == {schema.STATUS_OK: 4} and outcome.skipped == 2 and outcome.left == 0
    assert "2 of them by another sweep" in lines[0]

    runs = _children(store_uri, "tests")
    hashes = [r.data.tags[schema.T_CONFIG_HASH] for r in runs]
    assert len(runs) == 6 and len(set(hashes)) == 6  # every config exactly once across both sweeps
    assert set(hashes) == {p.config_hash for p in wider.points}
    # a second run of the edited spec finds everything finished
    again = sweep.run_sweep(wider, store_uri, SequentialExecutor(), say=lambda _: None)
    assert again.counts == {} and again.skipped == 6


def test_a_failed_run_of_another_sweep_is_not_reused(tmp_path: Path, store_uri: str) -> None:
    """Only ok/diverged runs count as finished; a failed config of the old sweep trains again in the new one."""
    old = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01]}, base={
        **TINY_BASE, "data": {"source": str(tmp_path / "missing.txt")}}))
    assert sweep.run_sweep(old, store_uri, SequentialExecutor(), say=lambda _: None).counts == {
        schema.STATUS_FAILED: 1}
    new = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02]}, base={
        **TINY_BASE, "data": {"source": str(tmp_path / "missing.txt")}}))
    assert sweep.describe_plan(new, store_uri)[0].endswith("2 configs, 0 already finished (skipped), 2 to run")

