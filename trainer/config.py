"""Run configuration: typed sections, strict parsing, validation that names the field, flattening and hashing.

A config is refused *before* any training when it is wrong (unknown field, YAML typo, bad value), with a message
that names the dotted field, because a sweep that dies after an hour on a typo is the worst failure mode of a
sweep tool. The flattened form (``model.width`` …) is what MLflow stores as params (see trainer.schema); the hash
of the canonical resolved config identifies a run so a resumed sweep never trains a finished config twice.

This module is pure Python so analysis and app can rebuild configs from params without importing torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

PARAMETERIZATIONS = ("sp", "mup", "completep", "completedp")

# Module types of the dense GPT (spec parameterizations.md §1). Each parameter tensor has exactly one.
MODULE_TYPES = (
    "token_emb", "pos_emb",
    "norm_attn", "attn_q", "attn_k", "attn_v", "attn_o", "qk_norm_q", "qk_norm_k",
    "norm_mlp", "mlp_up", "mlp_gate", "mlp_down",
    "router", "expert_up", "expert_gate", "expert_down",
    "norm_final", "unemb",
)
# Per-module multiplier kinds (spec §1: ζσ, ζη, ζλ, ζε, ζβ1, ζβ2) and the residual-branch multipliers.
MULT_KINDS = ("lr", "init", "wd", "eps", "beta1", "beta2")
RESID_BRANCHES = ("attn", "mlp")


class ConfigError(ValueError):
    """A config value is invalid. The message always starts with the dotted field name."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass
class ModelConfig:
    """Shape and architecture of the decoder-only pre-LN GPT."""

    width: int = 128  # residual stream width d
    depth: int = 2  # number of transformer blocks L
    head_dim: int = 32  # width grows by adding heads at fixed head_dim (spec §0: then 1/d vs 1/sqrt(d) is a constant)
    n_heads: int = 0  # 0: derived as width // head_dim
    mlp_ratio: float = 4.0  # d_ff = mlp_ratio * width (kept fixed across widths so every hidden fan-in ratio is m_N)
    mlp: str = "gelu"  # gelu | swiglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    qk_norm: bool = False
    pos: str = "learned"  # learned | rope
    rope_base: float = 10000.0
    seq_len: int = 128
    vocab_size: int = 256  # byte-level tokens
    tie_embeddings: bool = False
    n_experts: int = 0  # 0: dense MLP; E >= 1: mixture-of-experts MLP in every block
    top_k: int = 2  # active experts per token (the base k when param.fixed_sparsity keeps k/E fixed)
    expert_mlp_ratio: float = 0.0  # expert hidden width h_e = ratio · width; 0: same as mlp_ratio
    router_gate: str = "softmax"  # softmax | sigmoid; gates are normalised over the k active experts
    shared_expert: bool = False  # add a dense MLP (the mlp_* modules) beside the routed experts
    balance: str = "aux"  # aux (auxiliary loss) | bias (aux-loss-free bias, DeepSeek-V3) | none
    aux_loss_coef: float = 0.01
    bias_update_rate: float = 1e-3  # aux-loss-free: bias += rate · sign(mean load − load) per step
    capacity_factor: float = 0.0  # 0: dropless; c > 0: each expert takes at most ceil(c·tokens·k/E) tokens

    @property
    def n_heads_eff(self) -> int:
        return self.n_heads or self.width // self.head_dim

    @property
    def head_dim_eff(self) -> int:
        return self.width // self.n_heads_eff

    @property
    def d_ff(self) -> int:
        return int(round(self.mlp_ratio * self.width))

    @property
    def d_expert(self) -> int:
        """Expert hidden width h_e."""
        return int(round((self.expert_mlp_ratio or self.mlp_ratio) * self.width))


@dataclass
class ParamConfig:
    """Which parameterization sets up the tensors, and the base (proxy) shape the ratios are taken against."""

    name: str = "mup"  # sp | mup | completep | completedp
    alpha: float = 1.0  # CompleteP depth exponent, in [0.5, 1]
    base_width: int = 128
    base_depth: int = 2
    base_batch: int = 0  # 0: same as train.batch_size (m_B = 1)
    base_tokens: int = 0  # 0: same as train.tokens (m_D = 1)
    duration_exponent: float = 0.5  # Complete^(d)P LR ∝ m_D^-γ (spec §2.5, §4.2 item 7: 0.5 default, Marin 0.3)
    readout: str = "auto"  # auto | A | B. A: fwd mult 1/m_N (mup, CompleteP); B: init/LR 1/m_N (Complete^(d)P)
    eps_scaling: bool = True  # scale AdamW ε with width/depth (Complete^(d)P Tab.1); False = microsoft/mup (ε const)
    zero_readout: bool = True  # μP-family only: zero-init the unembedding (mup README, spec §7 bug 2)
    zero_query: bool = True  # μP-family only: zero-init W_q (mutransformers query_zero_init)
    router: str = "readout"  # MoE router as a readout (mup #48, DMFT; spec §3 default) or "hidden" (Complete-muE)
    expert_down: str = "fanin"  # fanin | dmft | complete_mue: the expert down-projection rule of spec §3
    base_experts: int = 0  # proxy expert count; 0: same as model.n_experts
    base_expert_mlp_ratio: float = 0.0  # proxy expert width ratio; 0: same as the model's
    fixed_sparsity: bool = False  # keep k/E fixed as E grows: k = top_k · E / base_experts (DMFT, spec §3)


@dataclass
class HParams:
    """Base hyperparameters, tuned on the proxy and transferred by the parameterization."""

    lr: float = 3e-3
    init_std: float = 0.02
    weight_decay: float = 0.0  # PyTorch-coupled AdamW convention (decay multiplied by LR), spec §0
    eps: float = 1e-8
    beta1: float = 0.9
    beta2: float = 0.95
    emb_mult: float = 1.0  # α_input, forward multiplier on the embedding output
    out_mult: float = 1.0  # α_output, forward multiplier on the logits
    attn_mult: float = 1.0  # α_attn; μP attention scale is α_attn·sqrt(base_head_dim)/d_head (= 1/sqrt(d_head) at base)


@dataclass
class OptimConfig:
    """Optimizer schedule and regularisation; the schedule scales every group relative to its own LR."""

    schedule: str = "cosine"  # cosine | linear | wsd | constant
    warmup_frac: float = 0.1
    min_lr_frac: float = 0.1  # final LR as a fraction of the peak
    decay_frac: float = 0.2  # WSD only: fraction of steps in the final decay
    grad_clip: float = 1.0  # 0 disables
    z_loss: float = 0.0


@dataclass
class TrainConfig:
    """How long, how big a batch, which seed and where."""

    batch_size: int = 16  # sequences per optimizer step
    tokens: int = 0  # total training tokens; 0 means use `steps`
    steps: int = 200  # used only when tokens == 0
    seed: int = 0
    eval_every: int = 50  # steps between validation evaluations (and at the end)
    eval_batches: int = 8
    log_every: int = 10  # steps between logged train-loss points
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the model (CUDA)
    divergence_factor: float = 2.0  # smoothed loss above factor × initial loss ends the run as diverged

    def resolved_steps(self, seq_len: int) -> int:
        """Optimizer steps: tokens / (batch_size·seq_len) when a token budget is given (spec §2.5: T ∝ D/B)."""
        if self.tokens:
            return max(1, self.tokens // (self.batch_size * seq_len))
        return self.steps


@dataclass
class DataConfig:
    """Training text: the shipped Shakespeare corpus, any text file, or a pre-tokenized uint16 .bin."""

    source: str = "shakespeare"  # shakespeare | path to .txt | path to .bin (uint16 tokens)
    val_frac: float = 0.1  # held-out tail of the corpus, fixed for every seed


def _mult_default() -> dict[str, dict[str, float]]:
    return {k: {} for k in MULT_KINDS}


@dataclass
class RunConfig:
    """One training run, fully specified."""

    model: ModelConfig = field(default_factory=ModelConfig)
    param: ParamConfig = field(default_factory=ParamConfig)
    hp: HParams = field(default_factory=HParams)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # Per-module multipliers ζ (spec §1, §4): mult[kind][module_type] -> factor; absent = 1.
    mult: dict[str, dict[str, float]] = field(default_factory=_mult_default)
    # Residual-branch multipliers, on top of the parameterization's m_L^-α (spec §5).
    resid: dict[str, float] = field(default_factory=lambda: {"attn": 1.0, "mlp": 1.0})
    # Depth profiles ζ_depth (spec §5): kind -> values at evenly spaced points of ℓ/L in [0, 1], linearly interpolated.
    depth_profile: dict[str, list[float]] = field(default_factory=dict)

    # ---- derived quantities -------------------------------------------------------------------------------
    @property
    def base_batch(self) -> int:
        return self.param.base_batch or self.train.batch_size

    @property
    def tokens(self) -> int:
        """Total training tokens actually planned (steps × batch × seq_len)."""
        return self.steps * self.train.batch_size * self.model.seq_len

    @property
    def base_tokens(self) -> int:
        return self.param.base_tokens or self.tokens

    @property
    def steps(self) -> int:
        return self.train.resolved_steps(self.model.seq_len)

    @property
    def top_k_eff(self) -> int:
        """Active experts per token; with param.fixed_sparsity, k/E stays at its base value (DMFT, spec §3)."""
        m, p = self.model, self.param
        if p.fixed_sparsity and m.n_experts:
            return max(1, round(m.top_k * m.n_experts / (p.base_experts or m.n_experts)))
        return m.top_k

    @property
    def readout_form(self) -> str:
        """Form A (fwd 1/m_N) for μP/CompleteP, Form B (init, LR 1/m_N) for Complete^(d)P (spec §2.2-2.4)."""
        if self.param.readout != "auto":
            return self.param.readout
        return "B" if self.param.name == "completedp" else "A"

    def ratios(self) -> dict[str, float]:
        """m_N, m_L, m_B, m_D (spec §0)."""
        return {
            "m_width": self.model.width / self.param.base_width,
            "m_depth": self.model.depth / self.param.base_depth,
            "m_batch": self.train.batch_size / self.base_batch,
            "m_tokens": self.tokens / self.base_tokens,
        }

    def expert_ratios(self) -> dict[str, float]:
        """m_E = E / E_base and m_a = α_ffn / α_ffn,base (expert width ratio relative to width), spec §0/§3."""
        m, p = self.model, self.param
        ratio = m.expert_mlp_ratio or m.mlp_ratio
        return {"m_experts": m.n_experts / (p.base_experts or m.n_experts or 1),
                "m_expert_width": ratio / (p.base_expert_mlp_ratio or ratio)}

    # ---- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The nested YAML form; ``RunConfig.from_dict(cfg.to_dict()) == cfg``."""
        out: dict[str, Any] = {s: dataclasses.asdict(getattr(self, s)) for s in _SECTIONS}
        out["mult"] = {kind: dict(per_module) for kind, per_module in self.mult.items() if per_module}
        out["mult"]["resid"] = dict(self.resid)
        if self.depth_profile:
            out["depth_profile"] = {k: list(v) for k, v in self.depth_profile.items()}
        return out

    def to_flat(self) -> dict[str, Any]:
        """Dotted keys -> values; multipliers as ``mult.<kind>.<module>``, residuals as ``mult.resid.<branch>``,
        depth profiles as ``depth_profile.<kind>`` (a JSON list string)."""
        out: dict[str, Any] = {}
        for section in ("model", "param", "hp", "optim", "train", "data"):
            for k, v in dataclasses.asdict(getattr(self, section)).items():
                out[f"{section}.{k}"] = v
        for kind, per_module in self.mult.items():
            for module, v in sorted(per_module.items()):
                out[f"mult.{kind}.{module}"] = v
        for branch, v in self.resid.items():
            out[f"mult.resid.{branch}"] = v
        for kind, values in self.depth_profile.items():
            out[f"depth_profile.{kind}"] = json.dumps(list(values))
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RunConfig:
        """Strict parse of the nested form; unknown sections or fields raise ConfigError naming them."""
        raw = dict(raw or {})
        cfg = cls()
        for section_name, section_cls in _SECTIONS.items():
            if section_name in raw:
                setattr(cfg, section_name, _parse_section(section_cls, raw.pop(section_name), section_name))
        if "mult" in raw:
            mult = raw.pop("mult")
            _expect_mapping(mult, "mult")
            for kind, per_module in mult.items():
                if kind == "resid":
                    _expect_mapping(per_module, "mult.resid")
                    for branch, v in per_module.items():
                        cfg.resid[_check_choice(branch, RESID_BRANCHES, "mult.resid")] = _to_float(
                            v, f"mult.resid.{branch}")
                    continue
                _check_choice(kind, MULT_KINDS + ("resid",), "mult")
                _expect_mapping(per_module, f"mult.{kind}")
                for module, v in per_module.items():
                    _check_choice(module, MODULE_TYPES, f"mult.{kind}")
                    cfg.mult[kind][module] = _to_float(v, f"mult.{kind}.{module}")
        if "depth_profile" in raw:
            prof = raw.pop("depth_profile")
            _expect_mapping(prof, "depth_profile")
            for kind, values in prof.items():
                _check_choice(kind, MULT_KINDS, "depth_profile")
                if isinstance(values, str):
                    values = json.loads(values)
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"depth_profile.{kind}", "must be a non-empty list of numbers")
                cfg.depth_profile[kind] = [_to_float(v, f"depth_profile.{kind}") for v in values]
        if raw:
            raise ConfigError(next(iter(raw)), f"unknown section; expected one of {sorted(_TOP_LEVEL)}")
        cfg.validate()
        return cfg

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> RunConfig:
        """Inverse of to_flat; tolerates the string values MLflow returns and ignores ``derived.*`` keys."""
        return cls.from_dict(unflatten({k: v for k, v in flat.items() if not k.startswith("derived.")}))

    def with_overrides(self, flat_overrides: dict[str, Any]) -> RunConfig:
        """A copy with dotted-key overrides applied (used by sweeps and ``--set``)."""
        merged = self.to_flat()
        for key in flat_overrides:
            if key.startswith("derived."):
                raise ConfigError(key, "derived values cannot be set")
        merged.update(flat_overrides)
        return RunConfig.from_flat(merged)

    # ---- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse anything that would fail or silently mis-train, before any training starts."""
        m, p, h, o, t, d = self.model, self.param, self.hp, self.optim, self.train, self.data
        for name, v in [("model.width", m.width), ("model.depth", m.depth), ("model.head_dim", m.head_dim),
                        ("model.seq_len", m.seq_len), ("model.vocab_size", m.vocab_size),
                        ("param.base_width", p.base_width), ("param.base_depth", p.base_depth),
                        ("train.batch_size", t.batch_size), ("train.eval_every", t.eval_every),
                        ("train.eval_batches", t.eval_batches), ("train.log_every", t.log_every)]:
            if v <= 0:
                raise ConfigError(name, f"must be positive, got {v}")
        for name, v in [("model.n_heads", m.n_heads), ("param.base_batch", p.base_batch),
                        ("param.base_tokens", p.base_tokens), ("train.tokens", t.tokens), ("train.seed", t.seed),
                        ("model.n_experts", m.n_experts)]:
            if v < 0:
                raise ConfigError(name, f"must be >= 0, got {v}")
        if t.tokens == 0 and t.steps <= 0:
            raise ConfigError("train.steps", f"must be positive when train.tokens is 0, got {t.steps}")
        if m.n_heads and m.width % m.n_heads:
            raise ConfigError("model.width", f"{m.width} is not divisible by model.n_heads={m.n_heads}")
        if not m.n_heads and m.width % m.head_dim:
            raise ConfigError("model.width", f"{m.width} is not divisible by model.head_dim={m.head_dim}")
        if m.pos == "rope" and m.head_dim_eff % 2:
            raise ConfigError("model.head_dim", "rotary positions need an even head dimension")
        if m.mlp_ratio <= 0:
            raise ConfigError("model.mlp_ratio", f"must be positive, got {m.mlp_ratio}")
        if m.n_experts:
            if not 1 <= self.top_k_eff <= m.n_experts:
                raise ConfigError("model.top_k", f"{self.top_k_eff} active experts is not within 1..{m.n_experts}")
            _check_choice(m.router_gate, ("softmax", "sigmoid"), "model.router_gate")
            _check_choice(m.balance, ("aux", "bias", "none"), "model.balance")
            _check_choice(p.router, ("readout", "hidden"), "param.router")
            _check_choice(p.expert_down, ("fanin", "dmft", "complete_mue"), "param.expert_down")
            for name in ("aux_loss_coef", "bias_update_rate", "capacity_factor", "expert_mlp_ratio"):
                if getattr(m, name) < 0:
                    raise ConfigError(f"model.{name}", f"must be >= 0, got {getattr(m, name)}")
            if p.base_experts < 0 or p.base_expert_mlp_ratio < 0:
                raise ConfigError("param.base_experts" if p.base_experts < 0 else "param.base_expert_mlp_ratio",
                                  "must be >= 0")
        _check_choice(m.mlp, ("gelu", "swiglu"), "model.mlp")
        _check_choice(m.norm, ("layernorm", "rmsnorm"), "model.norm")
        _check_choice(m.pos, ("learned", "rope"), "model.pos")
        _check_choice(p.name, PARAMETERIZATIONS, "param.name")
        _check_choice(p.readout, ("auto", "A", "B"), "param.readout")
        if not 0.5 <= p.alpha <= 1.0:
            raise ConfigError("param.alpha", f"must be in [0.5, 1] (CompleteP, spec §2.3), got {p.alpha}")
        if p.duration_exponent < 0:
            raise ConfigError("param.duration_exponent", f"must be >= 0, got {p.duration_exponent}")
        if m.tie_embeddings and self.readout_form == "B":
            raise ConfigError("model.tie_embeddings",
                              "tied embeddings need the Form A readout (spec §7 bug 4); set param.readout: A")
        for name in ("lr", "init_std", "emb_mult", "out_mult", "attn_mult"):
            v = getattr(h, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"hp.{name}", f"must be a positive finite number, got {v}")
        for name in ("weight_decay", "eps"):
            v = getattr(h, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"hp.{name}", f"must be >= 0 and finite, got {v}")
        for name in ("beta1", "beta2"):
            v = getattr(h, name)
            if not 0 <= v < 1:
                raise ConfigError(f"hp.{name}", f"must be in [0, 1), got {v}")
        _check_choice(o.schedule, ("cosine", "linear", "wsd", "constant"), "optim.schedule")
        for name in ("warmup_frac", "min_lr_frac", "decay_frac"):
            v = getattr(o, name)
            if not 0 <= v <= 1:
                raise ConfigError(f"optim.{name}", f"must be in [0, 1], got {v}")
        if o.grad_clip < 0 or o.z_loss < 0:
            raise ConfigError("optim.grad_clip" if o.grad_clip < 0 else "optim.z_loss", "must be >= 0")
        if not 0 < d.val_frac < 1:
            raise ConfigError("data.val_frac", f"must be in (0, 1), got {d.val_frac}")
        if t.divergence_factor <= 1:
            raise ConfigError("train.divergence_factor", f"must be > 1, got {t.divergence_factor}")
        if not (t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda")):
            raise ConfigError("train.device", f"expected auto, cpu, cuda or cuda:N, got {t.device!r}")
        if t.tokens and t.tokens < t.batch_size * m.seq_len:
            raise ConfigError("train.tokens", f"{t.tokens} is less than one batch ({t.batch_size}×{m.seq_len})")
        for kind, per_module in self.mult.items():
            for module, v in per_module.items():
                if not (v >= 0 and math.isfinite(v)) or (v == 0 and kind in ("lr", "eps")):
                    raise ConfigError(f"mult.{kind}.{module}", f"must be a positive finite number, got {v}")
        for branch, v in self.resid.items():
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"mult.resid.{branch}", f"must be a positive finite number, got {v}")
        for kind, values in self.depth_profile.items():
            if any(not (v > 0 and math.isfinite(v)) for v in values):
                raise ConfigError(f"depth_profile.{kind}", "values must be positive finite numbers")
        from trainer.parameterization import all_groups  # lazy: parameterization imports this module

        all_groups(self)  # refuses effective settings that cannot train (e.g. 1-β outside [0, 1))


_SECTIONS: dict[str, type] = {
    "model": ModelConfig, "param": ParamConfig, "hp": HParams,
    "optim": OptimConfig, "train": TrainConfig, "data": DataConfig,
}
_TOP_LEVEL = tuple(_SECTIONS) + ("mult", "depth_profile")


def _expect_mapping(value: Any, name: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(name, f"expected a mapping, got {type(value).__name__}: {value!r}")


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(name, f"unknown value {value!r}; expected one of {list(choices)}")
    return value


def _to_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(name, f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected a number, got {value!r}") from None


def _coerce(value: Any, typ: type, name: str) -> Any:
    """Parse one field from YAML or from an MLflow param string, strictly."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(name, f"expected an integer, got {value!r}")
        return int(f)
    if typ is float:
        return _to_float(value, name)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {typ} for {name}")


def _parse_section(cls: type, raw: Any, section: str) -> Any:
    _expect_mapping(raw, section)
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{section}.{key}", f"unknown field{hint} (known: {sorted(names)})")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)


def typed_flat(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted overrides with each value converted to its config field's type (MLflow hands back strings such as
    'True' or '0.5'); multipliers become floats, depth profiles lists. Unknown keys raise ConfigError."""
    defaults = RunConfig().to_flat()
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("mult."):
            out[key] = _to_float(value, key)
        elif key.startswith("depth_profile."):
            out[key] = [_to_float(v, key) for v in (json.loads(value) if isinstance(value, str) else value)]
        elif key in defaults:
            section, name = key.split(".", 1)
            out[key] = _coerce(value, get_type_hints(_SECTIONS[section])[name], key)
        else:
            raise ConfigError(key, "not a config field")
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.width": 64, "mult.lr.unemb": 2}`` -> nested dict (the YAML form)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, "conflicts with a scalar field of the same prefix")
        node[parts[-1]] = value
    return nested


def config_hash(cfg: RunConfig) -> str:
    """Identity of a run for resume: sha256 of the canonical resolved config, without fields that do not change
    what is trained (device, logging cadence).

    Only values that differ from the defaults enter the hash (multipliers of 1 included), so adding a new config
    field with a default that reproduces the old behaviour keeps every existing hash, and a resumed sweep does not
    retrain everything after an upgrade. The flip side: changing an existing default is a breaking change to run
    identity and must come with a new field instead."""
    flat = cfg.to_flat()
    for key in ("train.device", "train.log_every", "train.compile", "train.tokens", "train.steps"):
        flat.pop(key)
    defaults = RunConfig().to_flat()
    flat = {k: v for k, v in flat.items()
            if not (k in defaults and defaults[k] == v) and not (k.startswith("mult.") and float(v) == 1.0)}
    flat["train.steps"] = cfg.steps  # tokens or steps: hash what is actually trained
    canonical = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML/JSON config file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "the top level must be a mapping of sections (model, param, hp, …)")
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.field}", str(exc).split(": ", 1)[1]) from None
