"""Batched multi-config training: C configs in one batched model log what C separate train_run calls log."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from trainer import schema
from trainer.batched import BatchError, group_configs, shape_key, train_batched
from trainer.config import RunConfig
from trainer.runlog import MemoryRunLogger
from trainer.train import RunResult, train_run

REL = 1e-5  # fp32 on CPU: batched matmuls and the flat AdamW round differently, nothing else differs


def _separate(cfgs: list[RunConfig]) -> list[tuple[RunResult, MemoryRunLogger]]:
    out = []
    for cfg in cfgs:
        log = MemoryRunLogger()
        out.append((train_run(cfg, log), log))
    return out


def _batched(cfgs: list[RunConfig]) -> list[tuple[RunResult, MemoryRunLogger]]:
    logs = [MemoryRunLogger() for _ in cfgs]
    return list(zip(train_batched(cfgs, logs, [{"sweep.id": f"s{i}"} for i in range(len(cfgs))]), logs, strict=True))


def _assert_same_run(sep: tuple[RunResult, MemoryRunLogger], bat: tuple[RunResult, MemoryRunLogger]) -> None:
    (r_sep, l_sep), (r_bat, l_bat) = sep, bat
    assert (r_bat.status, r_bat.reason) == (r_sep.status, r_sep.reason)
    assert l_bat.params == l_sep.params  # config and derived.* params
    assert l_bat.artifacts.keys() == l_sep.artifacts.keys()
    assert l_bat.tags[schema.T_STATUS] == r_sep.status and l_bat.tags["sweep.id"].startswith("s")
    assert l_bat.metrics.keys() == l_sep.metrics.keys()
    for key in (schema.M_TRAIN_LOSS, schema.M_VAL_LOSS, schema.M_LR_SCALE):
        steps_sep, values_sep = zip(*l_sep.metrics[key], strict=True)
        steps_bat, values_bat = zip(*l_bat.metrics[key], strict=True)
        assert steps_bat == steps_sep
        assert values_bat == pytest.approx(values_sep, rel=REL), key
    for key in (schema.S_INITIAL_LOSS, schema.S_FINAL_TRAIN_LOSS, schema.S_FINAL_VAL_LOSS, schema.S_STEPS_DONE):
        assert r_bat.summary[key] == pytest.approx(r_sep.summary[key], rel=REL), key


def test_batched_configs_match_separate_runs() -> None:
    cfgs = [tiny_config(),
            tiny_config(**{"hp.lr": 3e-3, "mult.lr.attn_q": 4.0, "train.seed": 1}),
            tiny_config(**{"hp.lr": 2e-2, "mult.init.mlp_up": 0.5, "train.seed": 2, "hp.weight_decay": 0.1})]
    for sep, bat in zip(_separate(cfgs), _batched(cfgs), strict=True):
        _assert_same_run(sep, bat)


def test_forward_multipliers_schedules_and_architecture_variants_match() -> None:
    """Per-config forward multipliers (SP vs μP vs CompleteP: readout, residual, attention scale), schedules, z-loss
    and clipping, on a SwiGLU / RMSNorm / QK-norm / RoPE / tied-embedding shape."""
    arch = {"model.mlp": "swiglu", "model.norm": "rmsnorm", "model.qk_norm": True, "model.pos": "rope",
            "model.tie_embeddings": True, "train.steps": 10, "model.width": 64, "param.base_width": 32}
    cfgs = [tiny_config(**arch, **{"param.name": "sp", "hp.lr": 3e-3, "optim.schedule": "constant"}),
            tiny_config(**arch, **{"hp.out_mult": 2.0, "optim.z_loss": 1e-3, "optim.grad_clip": 0.0}),
            tiny_config(**arch, **{"param.name": "completep", "param.base_depth": 1, "mult.resid.mlp": 0.5,
                                   "hp.attn_mult": 2.0, "optim.schedule": "wsd"})]
    assert len(group_configs(cfgs)) == 1
    for sep, bat in zip(_separate(cfgs), _batched(cfgs), strict=True):
        _assert_same_run(sep, bat)


def test_a_diverging_config_stops_alone() -> None:
    cfgs = [tiny_config(**{"hp.lr": 10.0}), tiny_config(**{"train.seed": 1}), tiny_config(**{"hp.init_std": 1e30})]
    sep, bat = _separate(cfgs), _batched(cfgs)
    assert bat[0][0].status == sep[0][0].status == schema.STATUS_DIVERGED
    assert bat[0][0].summary[schema.S_DIVERGED_STEP] == sep[0][0].summary[schema.S_DIVERGED_STEP]
    assert bat[0][0].reason.startswith("smoothed train loss") and bat[0][1].tags[schema.T_STATUS] == "diverged"
    _assert_same_run(sep[1], bat[1])  # the healthy config is untouched by its neighbours' NaNs
    assert bat[2][0].reason == sep[2][0].reason == "non-finite loss nan at step 0"
    assert bat[2][0].summary[schema.S_STEPS_DONE] == 0


def test_an_error_fails_every_config_of_the_group() -> None:
    cfgs = [tiny_config(**{"data.source": "/nonexistent/corpus.txt", "train.seed": s}) for s in (0, 1)]
    results = _batched(cfgs)
    for result, log in results:
        assert result.status == schema.STATUS_FAILED and "ConfigError" in result.reason
        assert log.tags[schema.T_STATUS] == schema.STATUS_FAILED and "error.json" in log.artifacts


def test_group_configs_splits_by_shape() -> None:
    cfgs = [tiny_config(**{"hp.lr": 1e-2}), tiny_config(**{"model.width": 64}), tiny_config(**{"train.seed": 3}),
            tiny_config(**{"model.n_experts": 4}), tiny_config(**{"model.n_experts": 4, "hp.lr": 3e-3}),
            tiny_config(**{"param.name": "completep", "mult.lr.unemb": 2.0, "train.steps": 20}),
            tiny_config(**{"train.steps": 30})]
    assert group_configs(cfgs) == [[0, 2, 5], [1], [3], [4], [6]]
    assert group_configs(cfgs, max_size=2) == [[0, 2], [5], [1], [3], [4], [6]]
    # a token budget that resolves to the same step count is the same shape
    tokens = tiny_config(**{"train.tokens": 20 * 4 * 32})
    assert shape_key(tokens) == shape_key(tiny_config())


@pytest.mark.parametrize(("cfgs", "match"), [
    ([tiny_config(), tiny_config(**{"model.width": 64})], "model.width"),
    ([tiny_config(), tiny_config(**{"train.batch_size": 8})], "train.batch_size"),
    ([tiny_config(**{"model.n_experts": 4})], "mixture-of-experts"),
    ([], "at least one"),
])
def test_incompatible_configs_are_refused_before_logging(cfgs: list[RunConfig], match: str) -> None:
    logs = [MemoryRunLogger() for _ in cfgs]
    with pytest.raises(BatchError, match=match):
        train_batched(cfgs, logs)
    assert all(not log.tags for log in logs)


def test_one_logger_per_config() -> None:
    with pytest.raises(BatchError, match="loggers"):
        train_batched([tiny_config(), tiny_config()], [MemoryRunLogger()])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_bf16_on_cuda_trains_and_matches_the_cpu_start() -> None:
    cfgs = [tiny_config(**{"train.device": "cuda", "train.seed": s, "param.zero_readout": False, "train.steps": 60})
            for s in (0, 1)]
    results = _batched(cfgs)
    cpu = train_run(tiny_config(**{"param.zero_readout": False, "train.steps": 1}), MemoryRunLogger())
    for result, log in results:
        assert result.status == schema.STATUS_OK, result.reason
        assert log.tags[schema.T_DEVICE].startswith("cuda")
        assert result.summary[schema.S_FINAL_VAL_LOSS] < result.summary[schema.S_INITIAL_LOSS] - 1.0
    assert results[0][0].summary[schema.S_INITIAL_LOSS] == pytest.approx(cpu.summary[schema.S_INITIAL_LOSS], rel=2e-2)
