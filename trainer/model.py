"""Decoder-only pre-LN GPT whose every tensor is set up by trainer.parameterization.

Attribute names equal the spec's module types (token_emb, attn_q, mlp_down, norm_final, unemb, …), so a parameter's
name ``blocks.3.attn_q.weight`` says its module type and layer; ``param_groups_by_module`` relies on that and the
tests check that every parameter is classified. Linear layers have no biases (nanoGPT ``bias=False``); LayerNorm
has a bias, RMSNorm has none.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import MODULE_TYPES, RunConfig
from trainer.moe import MoE
from trainer.parameterization import ForwardMults, forward_multipliers, group_setting


class Norm(nn.Module):
    """LayerNorm (gain + bias) or RMSNorm (gain only) over the last dimension."""

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layernorm" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, eps=1e-5)
        return F.rms_norm(x, (x.shape[-1],), self.weight, eps=1e-6)


def rotary_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, Dh); rotate pairs (even, odd) by position-dependent angles."""
    t = x.shape[-2]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)
    return out.flatten(-2)


def scaled(mult: float, x: torch.Tensor) -> torch.Tensor:
    """mult·x, skipping the elementwise pass when mult is exactly 1 (SP, and μP at the base shape), so that in eager
    mode parameterization multipliers cost nothing (torch.compile fuses them either way)."""
    return x if mult == 1.0 else mult * x


class Block(nn.Module):
    """x + r_attn·Attn(Norm(x)); x + r_mlp·MLP(Norm(x)), with r = ζA·m_L^-α (CompleteP Tab.1)."""

    def __init__(self, cfg: RunConfig, layer: int, fm: ForwardMults) -> None:
        super().__init__()
        m = cfg.model
        d, d_ff = m.width, m.d_ff
        self.n_heads, self.head_dim = m.n_heads_eff, m.head_dim_eff
        self.attn_scale = fm.attn_scale
        self.resid_attn, self.resid_mlp = fm.resid[layer]
        self.norm_attn = Norm(d, m.norm)
        self.attn_q = nn.Linear(d, d, bias=False)
        self.attn_k = nn.Linear(d, d, bias=False)
        self.attn_v = nn.Linear(d, d, bias=False)
        self.attn_o = nn.Linear(d, d, bias=False)
        self.qk_norm_q = Norm(self.head_dim, m.norm) if m.qk_norm else None
        self.qk_norm_k = Norm(self.head_dim, m.norm) if m.qk_norm else None
        self.norm_mlp = Norm(d, m.norm)
        self.moe = MoE(cfg, fm.expert_out) if m.n_experts else None
        dense = not m.n_experts or m.shared_expert  # the dense MLP, or the MoE's shared expert
        self.mlp_up = nn.Linear(d, d_ff, bias=False) if dense else None
        self.mlp_gate = nn.Linear(d, d_ff, bias=False) if dense and m.mlp == "swiglu" else None
        self.mlp_down = nn.Linear(d_ff, d, bias=False) if dense else None

    def attention(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (lin(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
                   for lin in (self.attn_q, self.attn_k, self.attn_v))
        if self.qk_norm_q is not None:
            q, k = self.qk_norm_q(q), self.qk_norm_k(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        # The scale is always passed explicitly: SDPA's default 1/sqrt(d_head) would silently undo μP (spec §7 bug 3).
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.attn_scale)
        return self.attn_o(y.transpose(1, 2).reshape(b, t, d))

    def dense_mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.mlp_gate is not None:
            return self.mlp_down(F.silu(self.mlp_gate(x)) * self.mlp_up(x))
        return self.mlp_down(F.gelu(self.mlp_up(x)))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.moe is None:
            return self.dense_mlp(x)
        routed = self.moe(x)
        return routed + self.dense_mlp(x) if self.mlp_up is not None else routed

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + scaled(self.resid_attn, self.attention(self.norm_attn(x), rope))
        return x + scaled(self.resid_mlp, self.mlp(self.norm_mlp(x)))


class GPT(nn.Module):
    """The parameterized GPT. Build, then ``init_parameters(seed)`` before creating the optimizer (spec §1 req. 3)."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        fm = forward_multipliers(cfg)
        self.emb_mult, self.readout_mult = fm.emb, fm.readout
        self.token_emb = nn.Embedding(m.vocab_size, m.width)
        self.pos_emb = nn.Embedding(m.seq_len, m.width) if m.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, layer, fm) for layer in range(m.depth))
        self.norm_final = Norm(m.width, m.norm)
        self.unemb = None if m.tie_embeddings else nn.Linear(m.width, m.vocab_size, bias=False)
        if m.pos == "rope":
            cos, sin = rotary_tables(m.seq_len, m.head_dim_eff, m.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def classified_parameters(self) -> Iterator[tuple[str, nn.Parameter, str, int | None]]:
        """(name, parameter, module type, layer) for every parameter; the name encodes type and layer: the module
        type is the innermost path component that is a spec module type (``blocks.0.moe.router.weight``)."""
        for name, p in self.named_parameters():
            parts = name.split(".")
            module = next((part for part in reversed(parts) if part in MODULE_TYPES), None)
            if module is None:
                raise AssertionError(f"parameter {name} has no module type; name it after one of {MODULE_TYPES}")
            yield name, p, module, int(parts[1]) if parts[0] == "blocks" else None

    @torch.no_grad()
    def init_parameters(self, seed: int) -> None:
        """Init every tensor from its group's init std, drawn as std·N(0,1) from one CPU generator in parameter
        order, so a seed gives the same weights on any device and Form A/B readouts draw the same N(0,1)."""
        gen = torch.Generator().manual_seed(seed)
        for name, p, module, layer in self.classified_parameters():
            std = group_setting(self.cfg, module, layer).init_std
            if std is None:  # norm gain 1, bias 0
                p.fill_(0.0 if name.endswith("bias") else 1.0)
            else:
                z = torch.randn(p.shape, generator=gen)
                p.copy_(z * std)

    def n_params(self, non_embedding: bool = False) -> int:
        """All parameters, or without token/position embeddings (the N of scaling laws; a tied table counts once)."""
        skip = ("token_emb", "pos_emb") if non_embedding else ()
        return sum(p.numel() for _, p, module, _ in self.classified_parameters() if module not in skip)

    def n_params_active(self) -> int:
        """Non-embedding parameters one token uses: for MoE only k of the E experts' weights."""
        n = self.n_params(non_embedding=True)
        m = self.cfg.model
        if m.n_experts:
            experts = sum(p.numel() for _, p, module, _ in self.classified_parameters()
                          if module in ("expert_up", "expert_gate", "expert_down"))
            n -= round(experts * (1 - self.cfg.top_k_eff / m.n_experts))
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6·N_active (matmul params incl. unembedding) + 12·L·d·T attention
        (PaLM App. B); for MoE only the k active experts count."""
        m = self.cfg.model
        n = self.n_params_active() + (m.vocab_size * m.width if m.tie_embeddings else 0)
        return 6.0 * n + 12.0 * m.depth * m.width * m.seq_len

    def moe_layers(self) -> list[MoE]:
        return [b.moe for b in self.blocks if b.moe is not None]

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.token_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
        x = scaled(self.emb_mult, x)
        rope = (self.rope_cos, self.rope_sin) if self.cfg.model.pos == "rope" else None
        for block in self.blocks:
            x = block(x, rope)
        return self.norm_final(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, z_loss: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and (if targets) the mean cross-entropy plus z_loss·mean(logsumexp²), computed in fp32."""
        h = self.hidden_states(idx)
        weight = self.token_emb.weight if self.unemb is None else self.unemb.weight
        logits = scaled(self.readout_mult, F.linear(h, weight))
        if targets is None:
            return logits, None
        logits32 = logits.float()
        loss = F.cross_entropy(logits32.view(-1, logits32.shape[-1]), targets.reshape(-1))
        if z_loss:
            loss = loss + z_loss * torch.logsumexp(logits32, dim=-1).pow(2).mean()
        aux = [moe.aux_loss for moe in self.moe_layers() if moe.aux_loss is not None]
        if aux:
            loss = loss + self.cfg.model.aux_loss_coef * torch.stack(aux).mean()
        return logits, loss


