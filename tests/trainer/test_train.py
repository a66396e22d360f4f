"""Training loop: real training on Shakespeare, determinism, divergence and failure are recorded, not lost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from trainer import schema
from trainer.config import ConfigError, OptimConfig, RunConfig
from trainer.data import TokenBatches, load_tokens
from trainer.optim import lr_scale
from trainer.runlog import JsonlRunLogger, MemoryRunLogger, read_jsonl_run
from trainer.train import train_run


def test_tiny_run_trains_and_logs_the_schema(tiny: RunConfig) -> None:
    log = MemoryRunLogger()
    result = train_run(tiny.with_overrides({"train.steps": 40}), log, extra_tags={schema.T_SWEEP_ID: "s1"})
    assert result.status == schema.STATUS_OK and result.reason == ""
    assert log.tags[schema.T_STATUS] == schema.STATUS_OK
    assert log.tags[schema.T_SWEEP_ID] == "s1" and log.tags[schema.T_DEVICE].startswith("cpu")
    assert len(log.tags[schema.T_CONFIG_HASH]) == 16 and log.tags[schema.T_GIT_COMMIT]
    # params rebuild the config exactly
    assert RunConfig.from_flat(log.params) == tiny.with_overrides({"train.steps": 40})
    assert log.params[schema.P_N_PARAMS] > log.params[schema.P_N_PARAMS_NON_EMB] > 0
    # the loss went down from log(256) (zero-init readout) on real text
    assert log.metrics[schema.M_TRAIN_LOSS][0][1] < math.log(256)
    s = result.summary
    assert s[schema.S_INITIAL_LOSS] == pytest.approx(math.log(256), abs=1e-4)
    assert s[schema.S_FINAL_VAL_LOSS] < s[schema.S_INITIAL_LOSS] - 1.0
    assert s[schema.S_STEPS_DONE] == 40 and s[schema.S_TOKENS_SEEN] == 40 * 4 * 32
    assert s[schema.S_TOKENS_PER_S] > 0 and schema.S_MFU not in s  # no MFU on CPU
    for key in (schema.S_FINAL_TRAIN_LOSS, schema.S_BEST_VAL_LOSS, schema.S_MAX_TRAIN_LOSS, schema.S_WALL_S):
        assert key in s and log.last(key) == pytest.approx(s[key])
    assert [step for step, _ in log.metrics[schema.M_VAL_LOSS]] == [10, 20, 30, 40]
    assert len(log.artifacts[schema.A_EFFECTIVE_GROUPS]) == 2 + 2 * 8 + 2  # emb, pos, 8 per block, final, unemb


def test_same_seed_same_run_other_seed_other_run(tiny: RunConfig) -> None:
    def losses(cfg: RunConfig) -> list[float]:
        log = MemoryRunLogger()
        train_run(cfg, log)
        return [v for _, v in log.metrics[schema.M_TRAIN_LOSS]]

    a, b = losses(tiny), losses(tiny)
    assert a == b
    assert losses(tiny.with_overrides({"train.seed": 1})) != a


def test_divergence_ends_the_run_and_keeps_its_data(tiny: RunConfig) -> None:
    cfg = tiny.with_overrides({"param.name": "sp", "hp.lr": 3.0, "hp.init_std": 0.5, "optim.grad_clip": 0.0,
                               "optim.warmup_frac": 0.0, "train.steps": 200})
    log = MemoryRunLogger()
    result = train_run(cfg, log)
    assert result.status == schema.STATUS_DIVERGED
    assert log.tags[schema.T_STATUS] == schema.STATUS_DIVERGED and "initial" in log.tags[schema.T_STATUS_REASON]
    assert 0 < result.summary[schema.S_DIVERGED_STEP] < 200
    assert result.summary[schema.S_STEPS_DONE] == result.summary[schema.S_DIVERGED_STEP]
    assert log.metrics[schema.M_TRAIN_LOSS]  # the losses up to the blow-up are kept


def test_nan_loss_is_diverged(tiny: RunConfig) -> None:
    cfg = tiny.with_overrides({"param.name": "sp", "hp.lr": 1e30, "optim.grad_clip": 0.0, "optim.warmup_frac": 0.0})
    result = train_run(cfg, MemoryRunLogger())
    assert result.status == schema.STATUS_DIVERGED


def test_a_broken_run_is_recorded_as_failed(tiny: RunConfig, tmp_path) -> None:
    cfg = tiny.with_overrides({"data.source": str(tmp_path / "missing.txt")})
    log = MemoryRunLogger()
    result = train_run(cfg, log)
    assert result.status == schema.STATUS_FAILED
    assert "data.source" in result.reason and log.tags[schema.T_STATUS] == schema.STATUS_FAILED
    assert "traceback" in log.artifacts["error.json"]


@pytest.mark.parametrize("overrides", [
    {"model.pos": "rope", "model.mlp": "swiglu", "model.norm": "rmsnorm", "model.qk_norm": True},
    {"model.tie_embeddings": True, "param.name": "mup"},
    {"param.name": "completep", "param.alpha": 0.5, "model.depth": 4, "optim.schedule": "wsd", "optim.z_loss": 1e-4},
    {"param.name": "completedp", "param.base_batch": 2, "param.base_tokens": 2 * 32 * 40, "optim.schedule": "linear"},
])
def test_architecture_variants_train(tiny: RunConfig, overrides: dict) -> None:
    result = train_run(tiny.with_overrides(overrides), MemoryRunLogger())
    assert result.status == schema.STATUS_OK, result.reason
    assert result.summary[schema.S_FINAL_VAL_LOSS] < result.summary[schema.S_INITIAL_LOSS]


def test_jsonl_logger_round_trip_keeps_nonfinite(tmp_path, tiny: RunConfig) -> None:
    log = JsonlRunLogger(tmp_path, "r1")
    result = train_run(tiny, log)
    log.log_metrics({"x": float("nan"), "y": float("inf")}, step=99)
    log.flush()
    back = read_jsonl_run(tmp_path / "r1.jsonl")
    assert back.tags[schema.T_STATUS] == result.status
    assert back.last(schema.S_FINAL_VAL_LOSS) == pytest.approx(result.summary[schema.S_FINAL_VAL_LOSS])
    assert math.isnan(back.last("x")) and back.last("y") == math.inf
    (tmp_path / "bad.jsonl").write_text('{"type": "metrics", "step": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_jsonl_run(tmp_path / "bad.jsonl")


def test_schedules() -> None:
    o = OptimConfig(schedule="cosine", warmup_frac=0.1, min_lr_frac=0.1)
    vals = [lr_scale(s, 100, o) for s in range(100)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert max(vals) == pytest.approx(1.0) and vals[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(vals[9:], vals[10:], strict=False))
    w = OptimConfig(schedule="wsd", warmup_frac=0.0, decay_frac=0.2, min_lr_frac=0.0)
    wsd = [lr_scale(s, 100, w) for s in range(100)]
    assert wsd[79] == 1.0 and wsd[80] == 1.0 and wsd[99] == pytest.approx(0.05) and wsd[90] < 1.0
    c = OptimConfig(schedule="constant", warmup_frac=0.0)
    assert {lr_scale(s, 10, c) for s in range(10)} == {1.0}


def test_data_sources_and_fixed_validation(tmp_path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    cfg = tiny_config(**{"data.source": str(text)})
    a = TokenBatches(cfg.data, 256, 32, 4, seed=0)
    b = TokenBatches(cfg.data, 256, 32, 4, seed=1)
    assert torch.equal(a.val_batches(2)[0][0], b.val_batches(2)[0][0])  # held-out set independent of the seed
    assert not torch.equal(a.next_train()[0], b.next_train()[0])
    x, y = a.next_train()
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next tokens
    binfile = tmp_path / "tokens.bin"
    np.arange(5000, dtype=np.uint16).tofile(binfile)
    with pytest.raises(ConfigError, match="model.vocab_size"):
        load_tokens(str(binfile), 256)
    assert len(load_tokens(str(binfile), 5000)) == 5000
    shakespeare = load_tokens("shakespeare", 256)
    assert len(shakespeare) > 4_000_000 and b"HAMLET" in shakespeare.tobytes()
