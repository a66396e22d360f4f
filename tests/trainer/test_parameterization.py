"""Effective per-group settings against the spec tables (../shared/spec/parameterizations.md §2), over a grid of
width/depth/batch/duration ratios; per-module multipliers; optimizer groups; Form A ≡ Form B readout."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.conftest import tiny_config
from trainer.config import RunConfig
from trainer.model import GPT
from trainer.optim import apply_schedule, build_param_groups, make_optimizer
from trainer.parameterization import all_groups, forward_multipliers, group_setting

SIGMA, ETA, EPS, LAM, B1, B2 = 0.02, 1e-2, 1e-8, 0.1, 0.9, 0.95
HIDDEN = ("attn_q", "attn_k", "attn_v", "attn_o", "mlp_up", "mlp_gate", "mlp_down")


def expected(name: str, module: str, mn: float, ml: float, mb: float, md: float, alpha: float, depth: int
             ) -> tuple[float | None, float, float, float, float, float]:
    """(init std, lr, eps, wd, beta1, beta2) written out row by row from the spec tables, independently of the code.

    SP: §2.1.  μP: §2.2 Form A, ε per the Complete^(d)P μP column.  CompleteP: §2.3 Tab.1.  Complete^(d)P: §2.4 Tab.1
    with S = sqrt(m_B/m_D), Form B unembedding.
    """
    norm = module.startswith("norm") or module.startswith("qk_norm")
    if name == "sp":
        init = None if norm else (SIGMA / math.sqrt(2 * depth) if module in ("attn_o", "mlp_down") else SIGMA)
        return init, ETA, EPS, 0.0 if norm else LAM, B1, B2
    d = ml ** (alpha - 1) if name != "mup" else 1.0  # CompleteP LR depth factor
    e = ml ** (-alpha) if name != "mup" else 1.0  # CompleteP ε depth factor
    s = math.sqrt(mb / md) if name == "completedp" else 1.0
    beta = (1 - (1 - B1) * s * s, 1 - (1 - B2) * s * s)
    table = {
        "token_emb": (SIGMA, ETA * s, EPS / mn / s, LAM * s),
        "pos_emb": (SIGMA, ETA * s, EPS / mn / s, LAM * s),
        "norm_attn": (None, ETA * d * s, EPS / mn * e / s, 0.0),
        "norm_mlp": (None, ETA * d * s, EPS / mn * e / s, 0.0),
        "qk_norm_q": (None, ETA * d * s, EPS * e / s, 0.0),
        "qk_norm_k": (None, ETA * d * s, EPS * e / s, 0.0),
        "norm_final": (None, ETA * s, EPS / s, 0.0),
    }
    for h in HIDDEN:
        table[h] = (0.0 if h == "attn_q" else SIGMA / math.sqrt(mn), ETA / mn * d * s, EPS / mn * e / s, LAM * mn * s)
    if name == "completedp":  # Form B: init σ/m_N, LR η/m_N, ε ×1, WD λ·m_N; zero-init readout
        table["unemb"] = (0.0, ETA / mn * s, EPS / s, LAM * mn * s)
    else:  # Form A: LR ×1, WD ×1, ε ×1/m_N (abc-equivalent to Form B)
        table["unemb"] = (0.0, ETA, EPS / mn, LAM)
    return (*table[module], *beta)


GRID = list(itertools.product([1, 2, 8], [1, 4], [1, 4], [1, 2, 16]))  # m_N, m_L, m_B, m_D


def make(name: str, mn: int, ml: int, mb: int, md: int, alpha: float = 1.0) -> RunConfig:
    base_batch, base_steps = 2, 8
    return tiny_config(**{
        "param.name": name, "param.alpha": alpha, "param.base_width": 32, "param.base_depth": 2,
        "param.base_batch": base_batch, "param.base_tokens": base_batch * base_steps * 32,
        "model.width": 32 * mn, "model.depth": 2 * ml, "model.qk_norm": True, "model.mlp": "swiglu",
        "train.batch_size": base_batch * mb, "train.tokens": base_batch * base_steps * 32 * md,
        "hp.lr": ETA, "hp.eps": EPS, "hp.weight_decay": LAM, "hp.init_std": SIGMA, "hp.beta1": B1, "hp.beta2": B2,
    })


@pytest.mark.parametrize(("name", "alpha"), [("sp", 1.0), ("mup", 1.0), ("completep", 1.0), ("completep", 0.5),
                                             ("completedp", 1.0), ("completedp", 0.5)])
def test_effective_settings_match_spec_tables(name: str, alpha: float) -> None:
    for mn, ml, mb, md in GRID:
        cfg = make(name, mn, ml, mb, md, alpha)
        assert cfg.ratios() == pytest.approx({"m_width": mn, "m_depth": ml, "m_batch": mb, "m_tokens": md})
        for g in all_groups(cfg):
            want = expected(name, g.module, mn, ml, mb, md, alpha, cfg.model.depth)
            got = (g.init_std, g.lr, g.eps, g.wd, g.beta1, g.beta2)
            for w, v, what in zip(want, got, ("init", "lr", "eps", "wd", "beta1", "beta2"), strict=True):
                assert (w is None) == (v is None), (name, g.module, what)
                if w is not None:
                    assert v == pytest.approx(w, rel=1e-9), (name, alpha, mn, ml, mb, md, g.module, what)


@pytest.mark.parametrize(("name", "alpha"), [("sp", 1.0), ("mup", 1.0), ("completep", 1.0), ("completep", 0.5),
                                             ("completedp", 0.5)])
def test_forward_multipliers_match_spec(name: str, alpha: float) -> None:
    for mn, ml in itertools.product([1, 4], [1, 8]):
        fm = forward_multipliers(make(name, mn, ml, 1, 1, alpha))
        readout = 1.0 / mn if name in ("mup", "completep") else 1.0  # MuReadout 1/m_N; Complete^(d)P unaugmented
        resid = ml ** (-alpha) if name in ("completep", "completedp") else 1.0  # x + m_L^-α·F(LN(x))
        assert fm.readout == pytest.approx(readout)
        assert all(r == pytest.approx((resid, resid)) for r in fm.resid)
        # width grows by heads at fixed head_dim=16: 1/sqrt(16) for SP, and μP's α·sqrt(d_base)/d_head equals it
        assert fm.attn_scale == pytest.approx(0.25)


def test_mup_attention_is_one_over_d_head_when_heads_widen() -> None:
    """With a fixed head count, d_head grows with width and μP's scale must fall as 1/d_head (TP5; spec §7 bug 3)."""
    base = tiny_config(**{"model.n_heads": 2, "param.name": "mup"})
    wide = base.with_overrides({"model.width": 128})
    assert forward_multipliers(wide).attn_scale == pytest.approx(forward_multipliers(base).attn_scale / 4)
    sp_base, sp_wide = (c.with_overrides({"param.name": "sp"}) for c in (base, wide))
    assert forward_multipliers(sp_wide).attn_scale == pytest.approx(forward_multipliers(sp_base).attn_scale / 2)


def test_eps_scaling_off_matches_microsoft_mup() -> None:
    cfg = make("mup", 8, 1, 1, 1).with_overrides({"param.eps_scaling": False})
    assert {g.eps for g in all_groups(cfg)} == {EPS}


def test_per_module_multipliers_apply_to_their_module_only() -> None:
    base = make("completep", 2, 2, 1, 1)
    cfg = base.with_overrides({"mult.lr.token_emb": 4.0, "mult.init.mlp_up": 0.5, "mult.eps.attn_k": 3.0,
                               "mult.beta2.unemb": 0.5, "mult.wd.norm_attn": 1.0, "mult.resid.attn": 2.0})
    before = {(g.module, g.layer): g for g in all_groups(base)}
    for g in all_groups(cfg):
        b = before[(g.module, g.layer)]
        assert g.lr == pytest.approx(b.lr * (4.0 if g.module == "token_emb" else 1.0))
        assert g.init_std == (None if b.init_std is None else pytest.approx(b.init_std * (0.5 if g.module == "mlp_up"
                                                                                          else 1.0)))
        assert g.eps == pytest.approx(b.eps * (3.0 if g.module == "attn_k" else 1.0))
        assert 1 - g.beta2 == pytest.approx((1 - b.beta2) * (0.5 if g.module == "unemb" else 1.0))
        # WD on a norm only when explicitly asked for (spec §1 req. 4)
        assert g.wd == pytest.approx(LAM if g.module == "norm_attn" else b.wd)
    fm, fm0 = forward_multipliers(cfg), forward_multipliers(base)
    assert fm.resid[0] == pytest.approx((2 * fm0.resid[0][0], fm0.resid[0][1]))


def test_depth_profile_interpolates_in_relative_depth() -> None:
    """Profile points on ℓ/L ∈ [0, 1], read at block centres, so it resamples to any depth (spec §5)."""
    cfg = make("completep", 1, 2, 1, 1).with_overrides({"depth_profile.lr": [1.0, 3.0]})  # depth 4
    lrs = {g.layer: g.lr for g in all_groups(cfg) if g.module == "attn_v"}
    base = next(g.lr for g in all_groups(make("completep", 1, 2, 1, 1)) if g.module == "attn_v")
    assert [lrs[i] / base for i in range(4)] == pytest.approx([1.25, 1.75, 2.25, 2.75])
    emb = [g for g in all_groups(cfg) if g.module == "token_emb"][0]
    assert emb.lr == pytest.approx(ETA)  # the profile touches only block tensors


def _assert_groups_match(model: GPT, optimizer: torch.optim.Optimizer) -> None:
    """Every parameter sits in exactly one optimizer group whose settings equal its parameterization row."""
    seen = {}
    for group in optimizer.param_groups:
        for name in group["names"]:
            assert name not in seen, f"{name} is in two optimizer groups"
            seen[name] = group
    for name, _, module, layer in model.classified_parameters():
        g = group_setting(model.cfg, module, layer)
        grp = seen[name]
        assert (grp["base_lr"], grp["eps"], grp["weight_decay"], grp["betas"]) == (g.lr, g.eps, g.wd,
                                                                                  (g.beta1, g.beta2)), name


def test_optimizer_groups_and_relative_schedule() -> None:
    cfg = make("completedp", 2, 2, 2, 4).with_overrides({"mult.lr.token_emb": 3.0})
    model = GPT(cfg)
    model.init_parameters(0)
    opt = make_optimizer(model, torch.device("cpu"))
    _assert_groups_match(model, opt)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))
    ratios = [g["lr"] / g["base_lr"] for g in opt.param_groups]
    apply_schedule(opt, 0.25)
    assert all(g["lr"] == pytest.approx(0.25 * g["base_lr"]) for g in opt.param_groups)
    assert ratios == pytest.approx([1.0] * len(ratios))
    # distinct tuples only: merging never mixes different settings
    keys = [(g["base_lr"], g["eps"], g["weight_decay"], g["betas"]) for g in build_param_groups(model)]
    assert len(keys) == len(set(keys))


def test_every_parameter_is_classified_and_initialised_per_spec() -> None:
    cfg = make("mup", 4, 1, 1, 1).with_overrides({"param.zero_query": False, "param.zero_readout": False})
    model = GPT(cfg)
    model.init_parameters(0)
    settings = {(g.module, g.layer): g for g in all_groups(cfg)}
    for name, p, module, layer in model.classified_parameters():
        g = settings[(module, layer)]
        if g.init_std is None:
            assert torch.all(p == (0.0 if name.endswith("bias") else 1.0)), name
        else:
            assert p.std().item() == pytest.approx(g.init_std, rel=0.15), name


def _train_losses(cfg: RunConfig, steps: int) -> list[float]:
    from trainer.data import TokenBatches

    torch.manual_seed(0)
    model = GPT(cfg)
    model.init_parameters(0)
    opt = make_optimizer(model, torch.device("cpu"))
    data = TokenBatches(cfg.data, cfg.model.vocab_size, cfg.model.seq_len, cfg.train.batch_size, 0)
    losses = []
    for _ in range(steps):
        x, y = data.next_train()
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["mup", "completedp"])
@pytest.mark.parametrize(("eps", "wd"), [(1e-30, 0.0), (1e-6, 0.1)])
def test_form_a_and_form_b_readouts_train_identically(name: str, eps: float, wd: float) -> None:
    """abc-symmetry (spec §0, §8.1): fwd 1/m_N + init σ + LR η  ≡  fwd 1 + init σ/m_N + LR η/m_N.

    The issue's case is ε = wd = 0; ε is 1e-30 rather than 0 because embedding rows of bytes absent from a batch
    have an exactly zero gradient, and Adam's 0/0 would be NaN in both forms. The second case keeps a real ε and
    weight decay: it only matches if ε and λ move with the reparameterization (ε/m_N and λ in Form A, ε and λ·m_N
    in Form B), the step tools routinely forget. Gradient clipping is off: a global-norm clip is not abc-invariant.
    """
    common = {"param.name": name, "model.width": 128, "hp.eps": eps, "hp.weight_decay": wd, "optim.grad_clip": 0.0,
              "param.zero_readout": False, "param.zero_query": False, "hp.init_std": 0.05, "hp.lr": 3e-3}
    a = tiny_config(**common, **{"param.readout": "A"})
    b = tiny_config(**common, **{"param.readout": "B"})
    la, lb = _train_losses(a, 5), _train_losses(b, 5)
    assert all(math.isfinite(v) for v in la)
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-5)
    assert la[-1] < la[0]  # it did train
    # and the forms are genuinely different set-ups, not the same code path
    ga = {g.module: g for g in all_groups(a)}["unemb"]
    gb = {g.module: g for g in all_groups(b)}["unemb"]
    assert gb.lr == pytest.approx(ga.lr / 4) and gb.init_std == pytest.approx(ga.init_std / 4)


def test_forgetting_the_readout_eps_breaks_the_equivalence() -> None:
    """The same check fails for microsoft/mup's constant ε at a large ε: the test above can fail."""
    common = {"param.name": "mup", "model.width": 128, "hp.eps": 1e-3, "optim.grad_clip": 0.0,
              "param.zero_readout": False, "param.zero_query": False, "hp.init_std": 0.05, "hp.lr": 3e-3,
              "param.eps_scaling": False}
    la = _train_losses(tiny_config(**common, **{"param.readout": "A"}), 5)
    lb = _train_losses(tiny_config(**common, **{"param.readout": "B"}), 5)
    assert la != pytest.approx(lb, rel=1e-5, abs=1e-5)
