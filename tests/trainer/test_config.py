"""Config parsing: bad input is refused before training with a message naming the field."""

from __future__ import annotations

import pytest

from trainer.config import ConfigError, RunConfig, config_hash, load_config, unflatten


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"model": {"widht": 64}}, "model.widht"),  # typo of a field
        ({"modle": {"width": 64}}, "modle"),  # typo of a section
        ({"model": {"width": 100, "head_dim": 32}}, "model.width"),  # not divisible by head_dim
        ({"model": {"width": 96, "n_heads": 5}}, "model.width"),  # not divisible by n_heads
        ({"hp": {"lr": 0}}, "hp.lr"),
        ({"hp": {"lr": -1e-3}}, "hp.lr"),
        ({"hp": {"lr": "fast"}}, "hp.lr"),
        ({"param": {"name": "mupp"}}, "param.name"),
        ({"param": {"alpha": 0.3, "name": "completep"}}, "param.alpha"),
        ({"mult": {"lr": {"tok_emb": 2.0}}}, "mult.lr"),  # unknown module name
        ({"mult": {"momentum": {"token_emb": 2.0}}}, "mult"),  # unknown multiplier kind
        ({"mult": {"lr": {"token_emb": 0}}}, "mult.lr.token_emb"),
        ({"model": {"width": 64.5}}, "model.width"),
        ({"model": {"qk_norm": "yes"}}, "model.qk_norm"),
        ({"hp": {"beta2": 1.0}}, "hp.beta2"),
        ({"model": {"tie_embeddings": True}, "param": {"readout": "B"}}, "model.tie_embeddings"),
        ({"train": {"tokens": 10, "batch_size": 4}}, "train.tokens"),
        ({"depth_profile": {"lr": []}}, "depth_profile.lr"),
        ({"model": {"n_experts": 4, "top_k": 5}}, "model.top_k"),
        ({"model": {"n_experts": 4, "balance": "loss"}}, "model.balance"),
        ({"model": {"n_experts": 4}, "param": {"expert_down": "mup"}}, "param.expert_down"),
    ],
)
def test_bad_config_is_refused_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(raw)
    assert err.value.field == field
    assert str(err.value).startswith(field)


def test_completedp_beta_guard_names_the_beta() -> None:
    """(1-β)·m_B/m_D must stay below 1 (spec §2.5 guard)."""
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"param": {"name": "completedp", "base_batch": 1},
                             "train": {"batch_size": 32}, "hp": {"beta1": 0.9}})
    assert err.value.field == "hp.beta1"


def test_typo_suggests_the_right_field() -> None:
    with pytest.raises(ConfigError, match="did you mean 'width'"):
        RunConfig.from_dict({"model": {"widht": 64}})
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        RunConfig.from_dict({"hp": {"lrr": 0.1}})


def test_nested_dict_round_trip(tiny: RunConfig) -> None:
    cfg = tiny.with_overrides({"mult.lr.token_emb": 2.0, "mult.resid.mlp": 0.5, "depth_profile.lr": [1.0, 0.5]})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_yaml_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  width: [64\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  width: 64\nhp:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: hp.lrr"):
        load_config(typo)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")


def test_flat_round_trip_through_mlflow_strings(tiny: RunConfig) -> None:
    cfg = tiny.with_overrides({"mult.lr.token_emb": 2.0, "mult.resid.mlp": 0.5, "depth_profile.lr": [1.0, 0.5]})
    as_strings = {k: str(v) for k, v in cfg.to_flat().items()}  # MLflow returns params as strings
    back = RunConfig.from_flat(as_strings)
    assert back == cfg
    assert back.mult["lr"]["token_emb"] == 2.0 and back.resid["mlp"] == 0.5
    assert back.depth_profile["lr"] == [1.0, 0.5]
    assert unflatten({"a.b": 1, "a.c.d": 2}) == {"a": {"b": 1, "c": {"d": 2}}}


def test_config_hash_identifies_what_is_trained(tiny: RunConfig) -> None:
    h = config_hash(tiny)
    assert h == config_hash(RunConfig.from_flat(tiny.to_flat()))
    assert h == config_hash(tiny.with_overrides({"train.device": "cuda", "train.log_every": 1}))
    assert h == config_hash(tiny.with_overrides({"mult.lr.token_emb": 1.0}))  # a spelled-out default
    assert h != config_hash(tiny.with_overrides({"hp.lr": 2e-2}))
    assert h != config_hash(tiny.with_overrides({"train.seed": 1}))
    # the same number of steps given as a token budget is the same run
    tokens = tiny.steps * tiny.train.batch_size * tiny.model.seq_len
    assert h == config_hash(tiny.with_overrides({"train.tokens": tokens, "train.steps": 999}))
    # spelling out a default value does not change the identity (new fields keep old hashes)
    assert h == config_hash(tiny.with_overrides({"model.n_experts": 0, "param.router": "readout"}))


def test_derived_ratios(tiny: RunConfig) -> None:
    cfg = tiny.with_overrides({"model.width": 128, "model.depth": 8, "train.batch_size": 8, "param.base_batch": 4,
                               "train.tokens": 8 * 32 * 40, "param.base_tokens": 8 * 32 * 10})
    assert cfg.ratios() == {"m_width": 4.0, "m_depth": 4.0, "m_batch": 2.0, "m_tokens": 4.0}
    assert cfg.steps == 40


def test_typed_flat_restores_field_types_from_mlflow_strings() -> None:
    from trainer.config import typed_flat

    out = typed_flat({"param.eps_scaling": "True", "param.alpha": 1, "model.width": "64", "mult.lr.unemb": "2",
                      "depth_profile.lr": "[1, 0.5]", "param.name": "mup"})
    assert out == {"param.eps_scaling": True, "param.alpha": 1.0, "model.width": 64, "mult.lr.unemb": 2.0,
                   "depth_profile.lr": [1.0, 0.5], "param.name": "mup"}
    assert isinstance(out["param.alpha"], float) and isinstance(out["model.width"], int)
    with pytest.raises(ConfigError, match="hp.lrr"):
        typed_flat({"hp.lrr": 1})
