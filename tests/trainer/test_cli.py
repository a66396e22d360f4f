"""The command line: explain, train with --hparams (round trip), and errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import TINY
from trainer import schema
from trainer.cli import main
from trainer.config import RunConfig
from trainer.runlog import read_jsonl_run


def _write_config(tmp_path, raw=TINY):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_explain_prints_the_effective_table(tmp_path, capsys) -> None:
    path = _write_config(tmp_path)
    assert main(["explain", str(path), "--set", "model.width=128", "param.name=completep"]) == 0
    out = capsys.readouterr().out
    assert "m_width=4" in out and "attn_q" in out and "unemb" in out and "readout x0.25" in out
    assert main(["explain", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"module", "layer", "init_std", "fwd_mult", "lr", "eps", "wd", "beta1", "beta2"} <= set(rows[0])


def test_bad_config_exits_2_naming_the_field(tmp_path, capsys) -> None:
    bad = dict(TINY, model={"width": 30, "head_dim": 16})
    assert main(["explain", str(_write_config(tmp_path, bad))]) == 2
    assert "model.width" in capsys.readouterr().err
    assert main(["explain", str(_write_config(tmp_path)), "--set", "hp.lr=-1"]) == 2
    assert "hp.lr" in capsys.readouterr().err


def test_train_with_hparams_trains_exactly_what_the_json_says(tmp_path) -> None:
    rec = tmp_path / "rec.json"
    overrides = {"hp.lr": 0.0042, "mult.lr.token_emb": 2.5, "model.width": 64, "train.steps": 10}
    rec.write_text(json.dumps({"schema_version": 1, "config_overrides": overrides}))
    out = tmp_path / "logs"
    assert main(["train", str(_write_config(tmp_path)), "--hparams", str(rec), "--jsonl", str(out)]) == 0
    run = read_jsonl_run(next(out.glob("*.jsonl")))
    cfg = RunConfig.from_flat(run.params)
    assert cfg == RunConfig.from_dict(TINY).with_overrides(overrides)
    assert cfg.hp.lr == 0.0042 and cfg.mult["lr"]["token_emb"] == 2.5 and cfg.model.width == 64
    assert run.tags[schema.T_STATUS] == schema.STATUS_OK


def test_malformed_hparams_file_is_refused(tmp_path, capsys) -> None:
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"schema_version": 1}))
    assert main(["train", str(_write_config(tmp_path)), "--hparams", str(rec), "--jsonl", str(tmp_path)]) == 2
    assert "config_overrides" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "trainer", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "coord-check" in out.stdout
