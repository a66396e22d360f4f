"""Mixture-of-experts MLP: top-k routing, batched expert matmuls, load balancing, per-layer routing statistics.

Tokens are sorted by expert and scattered into an (E, capacity, d) buffer so all experts run as three batched
matmuls (``torch.bmm``), never a Python loop of tiny matmuls. Dropless by default (capacity = the busiest expert's
load); with ``capacity_factor`` c each expert keeps at most ceil(c·N·k/E) of its tokens, in token order, and the rest
fall through to the residual. With k ≥ 2 the gates are normalised over the k active experts (Complete-muE normalises
sigmoid gates; spec §3). With k = 1 the gate is the router's own score, as in the Switch Transformer (Fedus et al.
2101.03961 §2.1): normalised over one expert it would be exactly 1, and the router would get no gradient from the
loss at all, only from the balancing loss. Parameter names (router, expert_up, expert_gate, expert_down) are the
spec's module types, so the parameterization sets them up like any other tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import RunConfig


class MoE(nn.Module):
    """E experts of hidden width h_e, k active per token."""

    def __init__(self, cfg: RunConfig, expert_out: float) -> None:
        super().__init__()
        m = cfg.model
        n_exp, d, h = m.n_experts, m.width, m.d_expert
        self.n_experts, self.k = n_exp, cfg.top_k_eff
        self.gate_kind, self.balance = m.router_gate, m.balance
        self.capacity_factor, self.bias_rate = m.capacity_factor, m.bias_update_rate
        self.expert_out = expert_out
        self.router = nn.Linear(d, n_exp, bias=False)
        self.expert_up = nn.Parameter(torch.empty(n_exp, d, h))
        self.expert_gate = nn.Parameter(torch.empty(n_exp, d, h)) if m.mlp == "swiglu" else None
        self.expert_down = nn.Parameter(torch.empty(n_exp, h, d))
        # Aux-loss-free balancing bias (DeepSeek-V3): shifts expert *selection* only, updated by rule, not gradient.
        self.register_buffer("balance_bias", torch.zeros(n_exp))
        self.aux_loss: torch.Tensor | None = None
        self.stats: dict[str, torch.Tensor] = {}

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(expert indices (N, k), gates (N, k), router probabilities (N, E)). Gates sum to 1 when k ≥ 2 and are the
        router score itself when k = 1 (module docstring)."""
        logits = self.router(x).float()
        scores = logits.softmax(-1) if self.gate_kind == "softmax" else logits.sigmoid()
        select = scores + self.balance_bias if self.balance == "bias" else scores
        idx = select.topk(self.k, dim=-1).indices
        gates = scores.gather(-1, idx)
        if self.k > 1:
            gates = gates / gates.sum(-1, keepdim=True).clamp_min(1e-20)
        probs = scores if self.gate_kind == "softmax" else scores / scores.sum(-1, keepdim=True).clamp_min(1e-20)
        return idx, gates, probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n_tok, n_exp, k = x.shape[0], self.n_experts, self.k
        idx, gates, probs = self.route(x)
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)  # assignments grouped by expert, token order kept inside a group
        sorted_exp = flat[order]
        counts = torch.bincount(flat, minlength=n_exp)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(flat.numel(), device=x.device) - starts[sorted_exp]
        if self.capacity_factor > 0:
            cap = max(1, math.ceil(self.capacity_factor * n_tok * k / n_exp))
        else:
            cap = int(counts.max())  # dropless: the busiest expert sets the padded size
        keep = pos < cap
        token = order // k
        e_keep, p_keep, t_keep = sorted_exp[keep], pos[keep], token[keep]
        buf = x.new_zeros(n_exp, cap, x.shape[-1])
        buf[e_keep, p_keep] = x[t_keep]
        hidden = torch.bmm(buf, self.expert_up.to(buf.dtype))
        if self.expert_gate is not None:
            hidden = F.silu(torch.bmm(buf, self.expert_gate.to(buf.dtype))) * hidden
        else:
            hidden = F.gelu(hidden)
        y = torch.bmm(hidden, self.expert_down.to(hidden.dtype))
        weights = gates.reshape(-1)[order][keep].unsqueeze(-1)
        contrib = (y[e_keep, p_keep].float() * weights * self.expert_out).to(x.dtype)
        out = x.new_zeros(x.shape).index_add_(0, t_keep, contrib)
        self._balance(counts, probs, keep)
        return out.reshape(shape)

    def _balance(self, counts: torch.Tensor, probs: torch.Tensor, keep: torch.Tensor) -> None:
        """Aux loss E·Σ f_i·P_i (Switch Transformer), or the aux-loss-free bias step; and the routing statistics."""
        load = counts.float() / counts.sum()
        self.aux_loss = None
        if self.balance == "aux" and self.training:
            self.aux_loss = self.n_experts * (load.detach() * probs.mean(0)).sum()
        if self.balance == "bias" and self.training:
            with torch.no_grad():
                self.balance_bias += self.bias_rate * torch.sign(load.mean() - load)
        with torch.no_grad():
            entropy = -(probs * probs.clamp_min(1e-20).log()).sum(-1).mean()
            self.stats = {
                "load": load,
                "load_cv": load.std(correction=0) / load.mean(),
                "entropy": entropy / math.log(self.n_experts) if self.n_experts > 1 else torch.zeros(()),
                "dropped": 1.0 - keep.float().mean(),
            }
