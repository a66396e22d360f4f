"""The one place that turns (parameterization, base shape, target shape, base HPs, per-module multipliers) into each
tensor's init std, each forward multiplier and each optimizer group's (lr, eps, wd, beta1, beta2).

Implements the master formula of ../shared/spec/parameterizations.md §1:

    init_std = σ·ζσ[m]·Wσ          fwd_mult = ζA[m]·WA          lr = η·ζη[m]·ζη_depth[ℓ]·Wη·Tη
    eps      = ε·ζε[m]·Wε·Tε       wd = λ·ζλ[m]·Wλ·Tλ           1−β = (1−β_base)·ζβ[m]·Tβ

with W from the tables of §2.1 (SP), §2.2 (μP), §2.3 (CompleteP) and §2.4 (Complete^(d)P), and T the batch/duration
rules of §2.5 (Complete^(d)P only). Pure Python (no torch): the dashboard and the analysis layer expand a recommended
config into its effective per-group settings with the same code the trainer uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from trainer.config import ConfigError, RunConfig

MU_FAMILY = ("mup", "completep", "completedp")

# Module classes (rows of the spec tables).
EMB = ("token_emb", "pos_emb")
HIDDEN = ("attn_q", "attn_k", "attn_v", "attn_o", "mlp_up", "mlp_gate", "mlp_down")
EXPERTS = ("router", "expert_up", "expert_gate", "expert_down")
BLOCK_NORMS = ("norm_attn", "norm_mlp")
QK_NORMS = ("qk_norm_q", "qk_norm_k")
RESID_OUT = {"attn_o": "attn", "mlp_down": "mlp", "expert_down": "mlp"}  # matrices that write a residual branch


@dataclass(frozen=True)
class GroupSetting:
    """Effective settings of one (module type, layer) group. init_std is None for norms (gain 1, bias 0)."""

    module: str
    layer: int | None
    init_std: float | None
    fwd_mult: float
    lr: float
    eps: float
    wd: float
    beta1: float
    beta2: float

    def as_row(self) -> dict[str, float | int | str | None]:
        return asdict(self)


@dataclass(frozen=True)
class ForwardMults:
    """Scalars the model applies in its forward pass."""

    emb: float  # on token (+ learned position) embeddings: α_input
    readout: float  # on the logits: α_output, ×1/m_N for a Form A readout
    resid: tuple[tuple[float, float], ...]  # per layer (attn branch, mlp branch): ζA·m_L^-α
    attn_scale: float  # softmax scale passed explicitly to SDPA (spec §7 bug 3)
    expert_out: float = 1.0  # MoE, Complete-muE only: expert output multiplier A = d/H_act relative to the base


def module_types(cfg: RunConfig) -> list[str]:
    """Module types present in this architecture, in model order."""
    m = cfg.model
    out = ["token_emb"] + (["pos_emb"] if m.pos == "learned" else [])
    out += ["norm_attn", "attn_q", "attn_k", "attn_v", "attn_o"] + (list(QK_NORMS) if m.qk_norm else [])
    dense = ["mlp_up"] + (["mlp_gate"] if m.mlp == "swiglu" else []) + ["mlp_down"]
    experts = ["router", "expert_up"] + (["expert_gate"] if m.mlp == "swiglu" else []) + ["expert_down"]
    if m.n_experts:
        out += ["norm_mlp"] + experts + (dense if m.shared_expert else []) + ["norm_final"]
    else:
        out += ["norm_mlp"] + dense + ["norm_final"]
    out += [] if m.tie_embeddings else ["unemb"]
    return out


def is_block_module(module: str) -> bool:
    return module in HIDDEN or module in BLOCK_NORMS or module in QK_NORMS or module in EXPERTS


def _interp_profile(values: list[float], layer: int, depth: int) -> float:
    """ζ_depth at block ℓ: profile points evenly spaced on ℓ/L ∈ [0, 1], read at the block centre (ℓ+½)/L, linearly
    interpolated, so a profile tuned at one depth resamples to any other (spec §5, Kronecker type × depth)."""
    if len(values) == 1:
        return values[0]
    x = (layer + 0.5) / depth * (len(values) - 1)
    i = min(int(math.floor(x)), len(values) - 2)
    frac = x - i
    return values[i] * (1 - frac) + values[i + 1] * frac


def batch_duration_factors(cfg: RunConfig) -> dict[str, float]:
    """Complete^(d)P SDE factors (spec §2.4-2.5), identity for the other parameterizations.

    lr ×m_B^½·m_D^-γ (γ = duration_exponent; γ = ½ gives S = sqrt(m_B/m_D), Complete^(d)P Tab.1);
    eps ×1/T_lr (the inverse of the LR factor, §2.5; Marin's ε rule agrees);
    wd ×(m_B/m_D)/T_lr, which is S at γ = ½ and keeps the AdamW timescale τ = B/(η·λ·D) constant for any γ [D];
    (1−β) ×m_B/m_D for β1 and β2 (Complete^(d)P Tab.1).
    """
    if cfg.param.name != "completedp":
        return {"lr": 1.0, "eps": 1.0, "wd": 1.0, "beta": 1.0}
    r = cfg.ratios()
    t_lr = math.sqrt(r["m_batch"]) * r["m_tokens"] ** (-cfg.param.duration_exponent)
    return {"lr": t_lr, "eps": 1.0 / t_lr, "wd": (r["m_batch"] / r["m_tokens"]) / t_lr,
            "beta": r["m_batch"] / r["m_tokens"]}


def _width_depth_factors(cfg: RunConfig, module: str) -> tuple[float, float, float, float]:
    """(Wσ, Wη, Wε, Wλ) for one module type: the width/depth rows of the spec tables."""
    name = cfg.param.name
    r = cfg.ratios()
    mn, ml, a = r["m_width"], r["m_depth"], cfg.param.alpha
    eps_on = cfg.param.eps_scaling
    depthp = name in ("completep", "completedp")
    lr_depth = ml ** (a - 1) if depthp else 1.0  # CompleteP Tab.1: LR of block params ×m_L^(α−1)
    eps_depth = ml ** (-a) if depthp else 1.0  # CompleteP Tab.1: ε of block params ×m_L^-α

    if name == "sp":
        # SP (spec §2.1, CompleteP Tab.1 "SP"; nanoGPT): nothing scales except GPT-2's 1/sqrt(2L) on c_proj.
        init = 1.0 / math.sqrt(2 * cfg.model.depth) if module in RESID_OUT else 1.0
        return init, 1.0, 1.0, 1.0

    if module in EMB:
        # Input weights: init const, LR ×1 (TP5 Tab.8; CompleteP/Complete^(d)P Tab.1). ε ×m_N⁻¹ is the
        # Complete^(d)P correction ("without it the coord check fails", §2.4); μP column of that table agrees.
        return 1.0, 1.0, (1.0 / mn if eps_on else 1.0), 1.0
    if module in HIDDEN:
        # Hidden: init ×m_N^-½ (mup.init), LR ×m_N⁻¹ (MuAdamW), WD ×m_N (η·λ const, MuAdamW decoupled_wd=False),
        # ε ×m_N⁻¹·m_L^-α (CompleteP Tab.1 / Complete^(d)P Tab.1); no depth-scaled init (spec §7 bug 12).
        return 1.0 / math.sqrt(mn), lr_depth / mn, (eps_depth / mn if eps_on else 1.0), mn
    if module in EXPERTS:
        return _expert_factors(cfg, module, mn, lr_depth, eps_depth)
    if module in BLOCK_NORMS:
        # Pre-LN gains: LR ×m_L^(α−1), ε ×m_N⁻¹·m_L^-α (CompleteP Tab.1); WD is 0 unless ζλ asks (spec §1 req. 4).
        return 1.0, lr_depth, (eps_depth / mn if eps_on else 1.0), 1.0
    if module in QK_NORMS:
        # QK-norm gains live on head_dim, which does not scale: ε ×m_L^-α only (Complete^(d)P Tab.1).
        return 1.0, lr_depth, (eps_depth if eps_on else 1.0), 1.0
    if module == "norm_final":
        return 1.0, 1.0, 1.0, 1.0  # unembedding LN: ×1 (CompleteP/Complete^(d)P Tab.1)
    if module == "unemb":
        if cfg.readout_form == "B":
            # Form B (TP5 Tab.3; Complete^(d)P Tab.1 "unaugmented"): init ×m_N⁻¹, LR ×m_N⁻¹, ε ×1, WD ×m_N.
            return 1.0 / mn, 1.0 / mn, 1.0, mn
        # Form A (TP5 Tab.8, MuReadout): init const, fwd ×1/m_N (see forward_multipliers), LR ×1, WD ×1, and
        # ε ×m_N⁻¹ so that A and B are abc-equivalent (spec §2.2 note, [D]); microsoft/mup leaves ε at ×1.
        return 1.0, 1.0, (1.0 / mn if eps_on else 1.0), 1.0
    raise ConfigError("module", f"unknown module type {module!r}")


def _expert_factors(cfg: RunConfig, module: str, mn: float, lr_depth: float, eps_depth: float
                    ) -> tuple[float, float, float, float]:
    """MoE rows of spec §3 (router, experts); all sit inside the residual branch, so the CompleteP depth factors
    apply to their LR and ε. The number of experts changes nothing per expert (DMFT at fixed κ; Complete-muE)."""
    eps_on = cfg.param.eps_scaling
    if module == "router":
        if cfg.param.router == "readout":
            # Router as a readout, Form B (mup #48 "routing gate should be MuReadout"; DMFT Tab.1): init ×m_N⁻¹,
            # LR ×m_N⁻¹, WD ×m_N; ε ×m_L^-α only, its gradient being Θ(1) per entry like QK-norm (spec §3 [D]).
            return 1.0 / mn, lr_depth / mn, (eps_depth if eps_on else 1.0), mn
        # Router as a d-controlled hidden projection (Complete-muE): the hidden row.
        return 1.0 / math.sqrt(mn), lr_depth / mn, (eps_depth / mn if eps_on else 1.0), mn
    if module in ("expert_up", "expert_gate"):
        # fan-in d: the hidden row (μP reading, DMFT and Complete-muE agree).
        return 1.0 / math.sqrt(mn), lr_depth / mn, (eps_depth / mn if eps_on else 1.0), mn
    # expert_down, fan-in h_e = α_ffn·d, so its width ratio is m_N·m_a.
    ma = cfg.expert_ratios()["m_expert_width"]
    fan = mn * ma
    variant = cfg.param.expert_down
    if variant == "fanin":  # μP reading: hidden with fan_in = h_e
        init = 1.0 / math.sqrt(fan)
    elif variant == "dmft":  # DMFT: σ = α_ffn⁻¹·n_embd^-½ (mean-field in expert width), η = α_ffn⁻¹·n_embd⁻¹
        init = 1.0 / (math.sqrt(mn) * ma)
    else:  # complete_mue: init ×sqrt(H_act/d) relative to the dense companion; width LR; output multiplier A = d/H_act
        init = 1.0 / math.sqrt(mn) * math.sqrt(_h_act_ratio(cfg) / mn)
        fan = mn
    return init, lr_depth / fan, (eps_depth / fan if eps_on else 1.0), fan


def _h_act_ratio(cfg: RunConfig) -> float:
    """H_act = k·h_e (Complete-muE's sparse active hidden width), relative to the base model's."""
    m, p = cfg.model, cfg.param
    base_k = m.top_k if p.fixed_sparsity else cfg.top_k_eff
    base_h = (p.base_expert_mlp_ratio or m.expert_mlp_ratio or m.mlp_ratio) * p.base_width
    return (cfg.top_k_eff * m.d_expert) / (base_k * base_h)


def group_setting(cfg: RunConfig, module: str, layer: int | None) -> GroupSetting:
    """Effective settings of one group; layer is None for modules outside the blocks."""
    h = cfg.hp
    w_init, w_lr, w_eps, w_wd = _width_depth_factors(cfg, module)
    t = batch_duration_factors(cfg)

    def zeta(kind: str) -> float:
        z = cfg.mult[kind].get(module, 1.0)
        prof = cfg.depth_profile.get(kind)
        if prof is not None and layer is not None:
            z *= _interp_profile(prof, layer, cfg.model.depth)
        return z

    is_norm = module in BLOCK_NORMS or module in QK_NORMS or module == "norm_final"
    init_std = None if is_norm else h.init_std * zeta("init") * w_init
    if init_std is not None and cfg.param.name in MU_FAMILY and (
            (module == "unemb" and cfg.param.zero_readout) or (module == "attn_q" and cfg.param.zero_query)):
        init_std = 0.0  # zero-init readout and query (mup README; spec §7 bug 2)
    # Weight decay stays off norm gains unless a module multiplier explicitly asks for it (spec §1 req. 4).
    wd_on = not is_norm or module in cfg.mult["wd"]
    betas = []
    for kind, base in (("beta1", h.beta1), ("beta2", h.beta2)):
        one_minus = (1.0 - base) * zeta(kind) * t["beta"]
        if not 0.0 <= one_minus < 1.0:
            raise ConfigError(f"hp.{kind}", f"effective 1-{kind} = {one_minus:.4g} for {module} is outside [0, 1) "
                              "(Complete^(d)P scales 1-β by m_B/m_D; spec §2.5 guard)")
        betas.append(1.0 - one_minus)
    return GroupSetting(
        module=module,
        layer=layer,
        init_std=init_std,
        fwd_mult=_module_fwd_mult(cfg, module, layer),
        lr=h.lr * zeta("lr") * w_lr * t["lr"],
        eps=h.eps * zeta("eps") * w_eps * t["eps"],
        wd=(h.weight_decay * zeta("wd") * w_wd * t["wd"]) if wd_on else 0.0,
        beta1=betas[0],
        beta2=betas[1],
    )


def forward_multipliers(cfg: RunConfig) -> ForwardMults:
    """Forward-pass scalars: embedding α_input, readout α_output (×1/m_N in Form A), residual branches ζA·m_L^-α
    (CompleteP Tab.1: x + m_L^-α·F(LN(x))), and the attention softmax scale."""
    name = cfg.param.name
    r = cfg.ratios()
    readout = cfg.hp.out_mult
    if name in MU_FAMILY and cfg.readout_form == "A":
        readout /= r["m_width"]  # MuReadout: output_mult * x / width_mult (mup/layer.py)
    depth_mult = r["m_depth"] ** (-cfg.param.alpha) if name in ("completep", "completedp") else 1.0
    resid = tuple((cfg.resid["attn"] * depth_mult, cfg.resid["mlp"] * depth_mult) for _ in range(cfg.model.depth))
    d_head = cfg.model.head_dim_eff
    if name == "sp":
        attn_scale = cfg.hp.attn_mult / math.sqrt(d_head)
    else:
        # μP attention 1/d_head (TP5 Def. 4.1; mup README), normalised so that it equals 1/sqrt(d_head) at the base
        # shape (mutransformers attn_mult = sqrt(d_head) default).
        base_head_dim = cfg.param.base_width // cfg.model.n_heads if cfg.model.n_heads else cfg.model.head_dim
        attn_scale = cfg.hp.attn_mult * math.sqrt(base_head_dim) / d_head
    expert_out = 1.0
    if cfg.model.n_experts and name in MU_FAMILY and cfg.param.expert_down == "complete_mue":
        expert_out = r["m_width"] / _h_act_ratio(cfg)  # Complete-muE: A = d / H_act (spec §3)
    return ForwardMults(emb=cfg.hp.emb_mult, readout=readout, resid=resid, attn_scale=attn_scale,
                        expert_out=expert_out)


def _module_fwd_mult(cfg: RunConfig, module: str, layer: int | None) -> float:
    """The forward multiplier that acts on this module's output (for the explain table)."""
    fm = forward_multipliers(cfg)
    if module in EMB:
        return fm.emb
    if module == "unemb":
        return fm.readout
    if module in RESID_OUT and layer is not None:
        branch = fm.resid[layer][0 if RESID_OUT[module] == "attn" else 1]
        return branch * (fm.expert_out if module == "expert_down" else 1.0)
    return 1.0


def all_groups(cfg: RunConfig) -> list[GroupSetting]:
    """One setting per (module type, layer), in model order."""
    out: list[GroupSetting] = []
    types = module_types(cfg)
    out += [group_setting(cfg, m, None) for m in types if m in EMB]
    for layer in range(cfg.model.depth):
        out += [group_setting(cfg, m, layer) for m in types if is_block_module(m)]
    out += [group_setting(cfg, m, None) for m in types if m in ("norm_final", "unemb")]
    return out


def explain_rows(cfg: RunConfig) -> list[dict[str, float | int | str | None]]:
    """The `trainer explain` table as rows (also saved with every run as effective_groups.json)."""
    return [g.as_row() for g in all_groups(cfg)]


def explain_text(cfg: RunConfig) -> str:
    """Human-readable effective per-group table with the ratios and forward scalars on top."""
    r = cfg.ratios()
    fm = forward_multipliers(cfg)
    lines = [
        f"parameterization {cfg.param.name} (alpha={cfg.param.alpha}, readout form {cfg.readout_form}, "
        f"eps scaling {'on' if cfg.param.eps_scaling else 'off'})",
        "ratios  " + "  ".join(f"{k}={v:.4g}" for k, v in r.items()),
        f"forward emb x{fm.emb:.4g}  readout x{fm.readout:.4g}  attention scale {fm.attn_scale:.4g}  "
        f"residual (attn, mlp) x{fm.resid[0][0]:.4g}, x{fm.resid[0][1]:.4g}",
        f"steps {cfg.steps}  tokens {cfg.tokens}",
        "",
        f"{'module':<12} {'layer':>5} {'init_std':>10} {'fwd_mult':>9} {'lr':>10} {'eps':>10} {'wd':>10} "
        f"{'beta1':>7} {'beta2':>8}",
    ]
    for g in all_groups(cfg):
        init = "1/0 (norm)" if g.init_std is None else f"{g.init_std:.4g}"
        layer = "-" if g.layer is None else str(g.layer)
        lines.append(f"{g.module:<12} {layer:>5} {init:>10} {g.fwd_mult:>9.4g} {g.lr:>10.4g} {g.eps:>10.4g} "
                     f"{g.wd:>10.4g} {g.beta1:>7.4g} {g.beta2:>8.5g}")
    return "\n".join(lines)
