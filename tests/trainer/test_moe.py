"""Mixture-of-experts: routing, equivalence with the dense MLP, capacity, balancing, parameterization (spec §3)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_config
from trainer import schema
from trainer.model import GPT, Block
from trainer.moe import MoE
from trainer.parameterization import all_groups, explain_text, forward_multipliers, module_types
from trainer.runlog import MemoryRunLogger
from trainer.train import train_run


def _moe(**overrides: object) -> tuple[MoE, torch.Tensor]:
    cfg = tiny_config(**{"model.n_experts": 4, "model.top_k": 2, **overrides})
    model = GPT(cfg)
    model.init_parameters(0)
    return model.blocks[0].moe, torch.randn(4, 32, cfg.model.width, generator=torch.Generator().manual_seed(1))


def test_each_token_goes_to_k_experts_and_gradients_reach_router_and_experts() -> None:
    moe, x = _moe()
    idx, gates, _ = moe.route(x.reshape(-1, x.shape[-1]))
    assert idx.shape == (128, 2) and torch.all(idx[:, 0] != idx[:, 1])  # k distinct experts per token
    assert torch.allclose(gates.sum(-1), torch.ones(128))  # normalised over the active experts
    out = moe(x)
    assert out.shape == x.shape and float(moe.stats["dropped"]) == 0.0  # dropless
    assert float(moe.stats["load"].sum()) == pytest.approx(1.0)
    out.pow(2).sum().backward()
    assert moe.router.weight.grad.abs().sum() > 0
    for p in (moe.expert_up, moe.expert_down):
        used = moe.stats["load"] > 0
        assert torch.all(p.grad.flatten(1).abs().sum(1)[used] > 0)


@pytest.mark.parametrize("gate", ["softmax", "sigmoid"])
def test_top1_gate_is_the_router_score_so_the_loss_trains_the_router(gate: str) -> None:
    """Normalised over one active expert the gate would be exactly 1 and the router would learn only from the
    balancing loss, i.e. route at random (the Switch Transformer uses the raw score for k = 1)."""
    moe, x = _moe(**{"model.top_k": 1, "model.router_gate": gate, "model.aux_loss_coef": 0.0})
    flat = x.reshape(-1, x.shape[-1])
    idx, gates, probs = moe.route(flat)
    scores = moe.router(flat).float().softmax(-1) if gate == "softmax" else moe.router(flat).float().sigmoid()
    assert torch.allclose(gates[:, 0], scores.gather(-1, idx)[:, 0])
    assert float(gates.detach().max()) < 1.0
    moe(x).pow(2).sum().backward()
    assert moe.router.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_dropless_moe_with_one_expert_equals_the_dense_mlp(mlp: str) -> None:
    moe_cfg = tiny_config(**{"model.n_experts": 1, "model.top_k": 1, "model.mlp": mlp})
    dense_cfg = tiny_config(**{"model.mlp": mlp})
    moe_model, dense_model = GPT(moe_cfg), GPT(dense_cfg)
    dense_model.init_parameters(0)
    moe_model.load_state_dict(dense_model.state_dict(), strict=False)
    for mb, db in zip(moe_model.blocks, dense_model.blocks, strict=True):
        with torch.no_grad():
            mb.moe.expert_up[0].copy_(db.mlp_up.weight.T)
            mb.moe.expert_down[0].copy_(db.mlp_down.weight.T)
            if mlp == "swiglu":
                mb.moe.expert_gate[0].copy_(db.mlp_gate.weight.T)
    idx = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(moe_model(idx)[0], dense_model(idx)[0], atol=1e-5)


def test_capacity_factor_drops_overflow_tokens() -> None:
    moe, x = _moe(**{"model.capacity_factor": 0.5, "model.top_k": 1})
    out = moe(x)
    dropped = float(moe.stats["dropped"])
    assert 0 < dropped < 1
    # a dropped assignment contributes nothing: the number of exactly-zero output rows matches
    zero_rows = int((out.reshape(-1, out.shape[-1]).abs().sum(-1) == 0).sum())
    assert zero_rows == round(dropped * 128)


def test_aux_loss_balances_the_load() -> None:
    def final_cv(balance: str) -> float:
        log = MemoryRunLogger()
        cfg = tiny_config(**{"model.n_experts": 8, "model.top_k": 2, "model.balance": balance, "hp.lr": 3e-3,
                             "model.aux_loss_coef": 0.1, "train.steps": 60, "train.log_every": 10})
        assert train_run(cfg, log).status == schema.STATUS_OK
        return log.last(schema.M_MOE_LOAD_CV)

    assert final_cv("aux") < 0.6 * final_cv("none")


def test_bias_balancing_raises_the_bias_of_underloaded_experts() -> None:
    moe, x = _moe(**{"model.balance": "bias", "model.bias_update_rate": 0.01, "model.n_experts": 8})
    moe.train()
    moe(x)
    load = moe.stats["load"]
    expected = 0.01 * torch.sign(load.mean() - load)
    assert torch.allclose(moe.balance_bias, expected)
    assert torch.any(expected > 0) and torch.any(expected < 0)
    moe.eval()
    before = moe.balance_bias.clone()
    moe(x)
    assert torch.equal(moe.balance_bias, before)  # evaluation never moves the bias


def test_moe_run_logs_routing_health(tmp_path) -> None:
    log = MemoryRunLogger()
    cfg = tiny_config(**{"model.n_experts": 4, "model.top_k": 1, "model.shared_expert": True, "train.steps": 20})
    result = train_run(cfg, log)
    assert result.status == schema.STATUS_OK
    assert 0 <= log.last(schema.M_MOE_ENTROPY) <= 1 and log.last(schema.M_MOE_LOAD_CV) >= 0
    assert schema.S_MOE_LOAD_CV in result.summary and schema.S_MOE_ENTROPY in result.summary
    loads = log.artifacts[schema.A_MOE_LOAD]
    assert len(loads) == 2 and all(sum(layer) == pytest.approx(1.0) for layer in loads)
    assert log.params[schema.P_N_PARAMS_ACTIVE] < log.params[schema.P_N_PARAMS_NON_EMB]
    assert log.params[schema.P_TOP_K] == 1


SIGMA, ETA, EPS, LAM = 0.02, 1e-2, 1e-8, 0.1


@pytest.mark.parametrize(("router", "down"), [("readout", "fanin"), ("hidden", "dmft"), ("readout", "complete_mue")])
def test_moe_groups_match_spec_section_3(router: str, down: str) -> None:
    mn, ml, ma, alpha = 4, 2, 2, 0.5
    cfg = tiny_config(**{
        "model.n_experts": 8, "model.top_k": 2, "model.width": 32 * mn, "model.depth": 2 * ml,
        "model.expert_mlp_ratio": 2.0 * ma, "param.base_expert_mlp_ratio": 2.0, "param.name": "completep",
        "param.alpha": alpha, "param.router": router, "param.expert_down": down, "param.zero_query": False,
        "hp.lr": ETA, "hp.eps": EPS, "hp.weight_decay": LAM, "hp.init_std": SIGMA})
    g = {x.module: x for x in all_groups(cfg) if x.layer == 0}
    d, e = ml ** (alpha - 1), ml ** (-alpha)  # CompleteP depth factors apply inside the residual branch
    if router == "readout":  # Form B readout: init σ/m_N, LR η/m_N, ε ×m_L^-α only, WD ×m_N
        assert (g["router"].init_std, g["router"].lr, g["router"].eps, g["router"].wd) == pytest.approx(
            (SIGMA / mn, ETA / mn * d, EPS * e, LAM * mn))
    else:  # Complete-muE: d-controlled hidden projection
        assert (g["router"].init_std, g["router"].lr, g["router"].eps) == pytest.approx(
            (SIGMA / math.sqrt(mn), ETA / mn * d, EPS / mn * e))
    assert (g["expert_up"].init_std, g["expert_up"].lr, g["expert_up"].eps, g["expert_up"].wd) == pytest.approx(
        (SIGMA / math.sqrt(mn), ETA / mn * d, EPS / mn * e, LAM * mn))
    down_g = g["expert_down"]
    fm = forward_multipliers(cfg)
    if down == "fanin":  # hidden with fan-in h_e = α_ffn·d
        assert (down_g.init_std, down_g.lr) == pytest.approx((SIGMA / math.sqrt(mn * ma), ETA / (mn * ma) * d))
        assert fm.expert_out == 1.0
    elif down == "dmft":  # σ ∝ α_ffn⁻¹·d^-½, η ∝ α_ffn⁻¹·d⁻¹
        assert (down_g.init_std, down_g.lr) == pytest.approx((SIGMA / (math.sqrt(mn) * ma), ETA / (mn * ma) * d))
    else:  # Complete-muE: A = d/H_act, init ×sqrt(H_act/d), width LR; H_act grows as m_N·m_a here
        h_act = mn * ma
        assert fm.expert_out == pytest.approx(mn / h_act)
        assert (down_g.init_std, down_g.lr) == pytest.approx((SIGMA / math.sqrt(mn) * math.sqrt(h_act / mn),
                                                              ETA / mn * d))


def test_fixed_sparsity_keeps_k_over_e() -> None:
    cfg = tiny_config(**{"model.n_experts": 16, "model.top_k": 2, "param.base_experts": 4,
                         "param.fixed_sparsity": True})
    assert cfg.top_k_eff == 8
    assert tiny_config(**{"model.n_experts": 16, "model.top_k": 2, "param.base_experts": 4}).top_k_eff == 2


def test_explain_shows_router_and_expert_groups() -> None:
    cfg = tiny_config(**{"model.n_experts": 4, "model.mlp": "swiglu", "model.shared_expert": True})
    text = explain_text(cfg)
    for module in ("router", "expert_up", "expert_gate", "expert_down", "mlp_up"):
        assert module in text
    assert module_types(cfg).count("router") == 1
    block = Block(cfg, 0, forward_multipliers(cfg))
    assert block.moe is not None and block.mlp_up is not None  # shared expert beside the routed ones
