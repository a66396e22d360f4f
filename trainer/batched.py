"""Train C configs of one shape as one batched model: the small-proxy sweep path that keeps a GPU busy.

A proxy at width ≤ 256 launches kernels far too small to fill an H100, so a sweep over learning rates, per-module
multipliers, init scales and seeds leaves the device mostly idle when its runs go one by one. Here C such configs
train together: every weight carries a leading config dimension (``(C, d_out, d_in)``), every matmul is a
``torch.bmm`` over C, and everything a config's hyperparameters touch is a per-config tensor:

- initial weights: each config's GPT is built and initialised on the CPU exactly as ``train_run`` does
  (``GPT.init_parameters(seed)``) and its state becomes row c of the stack, so init is identical by construction;
- forward multipliers (embedding, readout, residual branches ζA·m_L^-α, attention scale; spec §1 "fwd_mult" and
  ``parameterization.forward_multipliers``) are ``(C, 1, 1)`` tensors, so configs may differ in param.name,
  param.alpha, base shapes and hp.*_mult as well;
- AdamW (decoupled decay p ← p·(1 − lr·wd), spec §0) runs on one flat ``(C, P)`` buffer with per-config, per-group
  lr/eps/wd/β tensors (the master formula of spec §1, evaluated by ``parameterization.group_setting`` per config),
  so the optimizer is a dozen elementwise kernels whatever the depth; the LR schedule is a per-config table;
- gradient clipping uses each config's own global norm (one row reduction of the flat gradient buffer);
- each config has its own data stream (``TokenBatches`` per distinct seed) and its own ``RunLogger`` run.

Divergence is isolated: the configs never mix in any op (batched matmuls, row-wise norms, per-config losses summed
for backward, whose gradient is 1 for every term), and a config that diverges is recorded exactly as ``train_run``
records it (same reasons and summaries), then frozen: its weights and optimizer state are zeroed and its learning
rate set to 0, so its slice stays finite and costs nothing but its share of the batched kernels.

Exactness: on CPU in fp32, C batched configs log the same losses as C separate ``train_run`` calls up to float
rounding (tests/trainer/test_batched.py). MoE configs are refused (token routing differs per config);
``group_configs`` leaves them alone in their group so a sweep trains them with ``train_run``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from trainer import schema
from trainer.config import RunConfig, config_hash
from trainer.data import TokenBatches
from trainer.model import GPT, apply_rotary, rotary_tables
from trainer.optim import lr_scale
from trainer.parameterization import forward_multipliers, group_setting
from trainer.runlog import RunLogger
from trainer.train import (
    Divergence,
    DivergenceMonitor,
    RunResult,
    begin_run,
    derived_params,
    describe_device,
    fail_run,
    finish_run,
    peak_flops,
    resolve_device,
    summarise,
)

# Tags that say a run was trained inside a batched group (throughput metrics are then per config: the group's
# aggregate tokens/s is C times a member's). Candidates for trainer/schema.py.

# Fields that may differ between the configs of one group: they only change per-config tensors (init values,
# forward multipliers, optimizer settings, schedule, data seed), never a shape or the order of operations.
_PER_CONFIG_SECTIONS = ("param", "hp", "optim", "mult", "depth_profile")
_PER_CONFIG_FIELDS = ("train.seed", "train.divergence_factor", "train.tokens", "train.steps")

# The parameter views are non-contiguous slices of the (C, P) buffer and so are their gradients (by design: one
# buffer, one kernel per optimizer op). Autograd accumulates into them in place and only warns about the layout.
_LAYOUT_WARNING = "grad and param do not obey the gradient layout contract"


class BatchError(ValueError):
    """The configs cannot be trained as one batched model (different shapes, MoE, mismatched loggers)."""


def shape_key(cfg: RunConfig) -> tuple[tuple[str, Any], ...]:
    """What configs of one batched group must share: every field that sets a tensor shape, the forward graph, the
    data, the step count and the logging cadence. Hyperparameters (param.*, hp.*, optim.*, mult.*, resid,
    depth_profile.*, train.seed, train.divergence_factor) are free. MoE configs get a key of their own (their
    config hash), so no group ever holds two of them."""
    flat = cfg.to_flat()
    items = [(k, v) for k, v in flat.items()
             if k.split(".", 1)[0] not in _PER_CONFIG_SECTIONS and k not in _PER_CONFIG_FIELDS]
    items.append(("steps", cfg.steps))  # train.tokens or train.steps: what must agree is the resolved count
    if cfg.model.n_experts:
        items.append(("moe.config_hash", config_hash(cfg)))
    return tuple(sorted(items))


def group_configs(cfgs: Sequence[RunConfig], max_size: int | None = None) -> list[list[int]]:
    """Indices of ``cfgs`` split into batchable groups (same ``shape_key``), in order of first appearance; a group
    larger than ``max_size`` (memory) is cut into consecutive chunks. Singletons are best trained by train_run."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(shape_key(cfg), []).append(i)
    size = max_size or max(1, len(cfgs))
    return [idx[j:j + size] for idx in groups.values() for j in range(0, len(idx), size)]


def check_batchable(cfgs: Sequence[RunConfig]) -> None:
    """Raise BatchError naming the first field that stops ``cfgs`` from training as one batched model."""
    if not cfgs:
        raise BatchError("train_batched needs at least one config")
    for i, cfg in enumerate(cfgs):
        if cfg.model.n_experts:
            raise BatchError(f"config {i}: mixture-of-experts configs (model.n_experts={cfg.model.n_experts}) "
                             "cannot be batched (routing differs per config); train them with train_run")
    ref = dict(shape_key(cfgs[0]))
    for i, cfg in enumerate(cfgs[1:], 1):
        other = dict(shape_key(cfg))
        diff = sorted(k for k in ref.keys() | other.keys() if ref.get(k) != other.get(k))
        if diff:
            k = diff[0]
            raise BatchError(f"configs 0 and {i} differ in {k} ({ref.get(k)!r} vs {other.get(k)!r}); only "
                             "hyperparameters may differ within a batched group (split with group_configs)")


# ---- the batched model ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    """One parameter of the per-config GPT and where its C copies live in the flat buffer."""

    name: str
    module: str
    layer: int | None
    shape: tuple[int, ...]
    offset: int
    numel: int


class BatchedGPT:
    """C GPTs of one shape as stacked weights in one ``(C, P)`` buffer; ``losses`` is ``GPT.forward``'s loss
    (cross-entropy plus z-loss, in fp32) per config, computed with batched matmuls."""

    def __init__(self, cfgs: Sequence[RunConfig], dev: torch.device, act_dtype: torch.dtype) -> None:
        self.cfg = cfgs[0]  # the shared shape
        m = self.cfg.model
        self.n = len(cfgs)
        self.width, self.n_heads, self.head_dim = m.width, m.n_heads_eff, m.head_dim_eff
        self.derived: list[dict[str, float | int]] = []
        self.slots: list[_Slot] = []
        rows = []
        for cfg in cfgs:  # one GPT at a time: init exactly as train_run, keep only its flattened weights
            gpt = GPT(cfg)
            gpt.init_parameters(cfg.train.seed)
            self.derived.append(derived_params(cfg, gpt))
            if not self.slots:
                offset = 0
                for name, p, module, layer in gpt.classified_parameters():
                    self.slots.append(_Slot(name, module, layer, tuple(p.shape), offset, p.numel()))
                    offset += p.numel()
                self.flops_per_token = gpt.flops_per_token()
            rows.append(torch.cat([p.detach().reshape(-1) for p in gpt.parameters()]))
        self.flat = torch.stack(rows).to(dev)
        self.grad = torch.zeros_like(self.flat)
        self.w: dict[str, torch.Tensor] = {}
        for s in self.slots:
            view = self.flat[:, s.offset:s.offset + s.numel].view(self.n, *s.shape).requires_grad_()
            view.grad = self.grad[:, s.offset:s.offset + s.numel].view(self.n, *s.shape)
            self.w[s.name] = view
        self._forward_multipliers(cfgs, dev, act_dtype)
        self.cidx = torch.arange(self.n, device=dev).view(self.n, 1, 1)
        self.rope = None
        if m.pos == "rope":
            cos, sin = rotary_tables(m.seq_len, m.head_dim_eff, m.rope_base)
            self.rope = (cos.to(dev), sin.to(dev))

    def _forward_multipliers(self, cfgs: Sequence[RunConfig], dev: torch.device, act_dtype: torch.dtype) -> None:
        """Per-config forward scalars as broadcastable tensors. Those that multiply a matmul output live in the
        activation dtype, as the Python floats of GPT.forward do under autocast (no fp32 promotion of the
        activations); the embedding multiplier acts on the fp32 embedding, as in GPT.hidden_states."""
        fms = [forward_multipliers(cfg) for cfg in cfgs]

        def col(values: list[float], dtype: torch.dtype, ndim: int = 3) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(-1, *([1] * (ndim - 1))).to(dev, dtype)

        self.emb_mult = col([f.emb for f in fms], torch.float32, 4)
        self.readout_mult = col([f.readout for f in fms], act_dtype)
        self.resid = [tuple(col([f.resid[layer][branch] for f in fms], act_dtype) for branch in (0, 1))
                      for layer in range(self.cfg.model.depth)]
        scales = [f.attn_scale for f in fms]
        # One shared scale goes to SDPA as is (bit-identical to GPT); differing scales are folded into q and SDPA
        # gets 1.0 — never SDPA's default 1/sqrt(d_head), which would undo μP (spec §7 bug 3).
        self.attn_scale: float | torch.Tensor = scales[0] if len(set(scales)) == 1 else col(scales, torch.float32, 5)
        z = [cfg.optim.z_loss for cfg in cfgs]
        self.z_loss = col(z, torch.float32, 1) if any(z) else None

    def zero_grad(self) -> None:
        self.grad.zero_()

    def _norm(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        """``Norm`` with per-config gain (and bias): normalise, then the affine step broadcast over the config dim."""
        w = self.w[f"{prefix}.weight"]
        shape = (self.n,) + (1,) * (x.dim() - 2) + (w.shape[-1],)
        if self.cfg.model.norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), eps=1e-5) * w.view(shape) + self.w[f"{prefix}.bias"].view(shape)
        return F.rms_norm(x, (x.shape[-1],), eps=1e-6) * w.view(shape)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """x (C, N, d_in) @ W(C, d_out, d_in)ᵀ: nn.Linear's F.linear, batched over configs."""
        return torch.bmm(x, self.w[f"{name}.weight"].mT)

    def _attention(self, x: torch.Tensor, layer: int, b: int, t: int) -> torch.Tensor:
        c, h, dh, pre = self.n, self.n_heads, self.head_dim, f"blocks.{layer}"
        q, k, v = (self._linear(x, f"{pre}.{name}").view(c, b, t, h, dh).transpose(2, 3)
                   for name in ("attn_q", "attn_k", "attn_v"))
        if self.cfg.model.qk_norm:
            q, k = self._norm(q, f"{pre}.qk_norm_q"), self._norm(k, f"{pre}.qk_norm_k")
        scale = self.attn_scale
        if isinstance(scale, torch.Tensor):
            q, scale = q * scale, 1.0
        q, k, v = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)  # (C·B, H, T, d_head)
        if self.rope is not None:
            q, k = apply_rotary(q, *self.rope), apply_rotary(k, *self.rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        y = y.view(c, b, h, t, dh).transpose(2, 3).reshape(c, b * t, self.width)
        return self._linear(y, f"{pre}.attn_o")

    def _mlp(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        pre = f"blocks.{layer}"
        up = self._linear(x, f"{pre}.mlp_up")
        if self.cfg.model.mlp == "swiglu":
            return self._linear(F.silu(self._linear(x, f"{pre}.mlp_gate")) * up, f"{pre}.mlp_down")
        return self._linear(F.gelu(up), f"{pre}.mlp_down")

    def losses(self, idx: torch.Tensor, targets: torch.Tensor, z_loss: bool = True) -> torch.Tensor:
        """(C,) losses of token batches ``idx``/``targets`` of shape (C, B, T); config c sees only its row. Like
        GPT.forward, the z-loss term is there for training only (``z_loss=False`` for validation)."""
        c, b, t = idx.shape
        x = self.w["token_emb.weight"][self.cidx, idx]  # (C, B, T, d)
        if "pos_emb.weight" in self.w:
            x = x + self.w["pos_emb.weight"][:, None, :t]
        x = (self.emb_mult * x).view(c, b * t, self.width)
        for layer, (r_attn, r_mlp) in enumerate(self.resid):
            x = x + r_attn * self._attention(self._norm(x, f"blocks.{layer}.norm_attn"), layer, b, t)
            x = x + r_mlp * self._mlp(self._norm(x, f"blocks.{layer}.norm_mlp"), layer)
        h = self._norm(x, "norm_final")
        readout = self.w["unemb.weight" if "unemb.weight" in self.w else "token_emb.weight"]
        logits32 = (self.readout_mult * torch.bmm(h, readout.mT)).float()
        loss = F.cross_entropy(logits32.flatten(0, 1), targets.reshape(-1), reduction="none").view(c, -1).mean(1)
        if z_loss and self.z_loss is not None:
            z_term = self.z_loss * torch.logsumexp(logits32, dim=-1).pow(2).mean(1)
            loss = loss + torch.where(self.z_loss > 0, z_term, 0.0)  # z = 0 adds nothing, as in GPT.forward
        return loss

    @torch.no_grad()
    def freeze(self, c: int) -> None:
        """Zero config c's weights: its slice then computes finite zeros instead of NaN (see BatchedAdamW.freeze)."""
        self.flat[c].zero_()


# ---- the batched optimizer -----------------------------------------------------------------------------------
class BatchedAdamW:
    """AdamW on the flat ``(C, P)`` buffer, step for step the math of ``torch.optim.AdamW`` (decoupled decay
    p·(1 − lr·wd); m, v with bias correction; denominator sqrt(v̂) + ε), with every setting a per-config,
    per-element tensor: row c, element j holds group_setting(cfg_c, module_j, layer_j). A setting that is constant
    along a row (β's, weight decay, often) is kept as (C, 1) so it costs no memory traffic."""

    def __init__(self, model: BatchedGPT, cfgs: Sequence[RunConfig], dev: torch.device) -> None:
        self.model = model
        table = {key: [[0.0] * len(model.slots) for _ in cfgs] for key in ("lr", "eps", "wd", "beta1", "beta2")}
        for c, cfg in enumerate(cfgs):
            for j, s in enumerate(model.slots):
                g = group_setting(cfg, s.module, s.layer)
                for key in table:
                    table[key][c][j] = getattr(g, key)
        counts = torch.tensor([s.numel for s in model.slots])
        self.h = {key: _per_element(values, counts, dev) for key, values in table.items()}
        self.m = torch.zeros_like(model.flat)
        self.v = torch.zeros_like(model.flat)
        total = cfgs[0].steps
        sched = [[lr_scale(step, total, cfg.optim) for cfg in cfgs] for step in range(total)]
        self.schedule = torch.tensor(sched, dtype=torch.float32).to(dev)  # (steps, C): each config's own sched(t)
        self.max_norm = torch.tensor([cfg.optim.grad_clip or math.inf for cfg in cfgs]).to(dev)
        self.steps_done = 0

    @torch.no_grad()
    def clip_grad_norm(self) -> torch.Tensor:
        """Per-config clip_grad_norm_: each config's global gradient norm (returned, before clipping) and the same
        coefficient min(1, max_norm/(norm + 1e-6)) applied to its row."""
        norms = torch.linalg.vector_norm(self.model.grad, dim=1)
        coef = (self.max_norm / (norms + 1e-6)).clamp(max=1.0)
        self.model.grad.mul_(coef[:, None])
        return norms

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW step for every config at its own scheduled LR (a frozen config's is 0)."""
        self.steps_done += 1
        p, g, m, v, h = self.model.flat, self.model.grad, self.m, self.v, self.h
        lr = self.schedule[self.steps_done - 1][:, None] * h["lr"]
        p.mul_(1 - lr * h["wd"])
        m.lerp_(g, 1 - h["beta1"])
        v.mul_(h["beta2"]).addcmul_(g, g * (1 - h["beta2"]))
        bias1 = 1 - h["beta1"] ** self.steps_done
        bias2_sqrt = (1 - h["beta2"] ** self.steps_done).sqrt()
        denom = (v.sqrt() / bias2_sqrt).add_(h["eps"])
        p.addcdiv_(m * (lr / bias1), denom, value=-1.0)

    @torch.no_grad()
    def freeze(self, c: int) -> None:
        """Stop config c: LR 0 from now on and zeroed moments; with its weights zeroed too (BatchedGPT.freeze)
        every later update of the slice is exactly 0 and nothing in it can become NaN."""
        self.schedule[:, c] = 0.0
        self.m[c].zero_()
        self.v[c].zero_()
        self.model.freeze(c)


def _per_element(values: list[list[float]], counts: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """(C, n_tensors) settings -> (C, P) per element, or (C, 1) where every row is constant."""
    t = torch.tensor(values, dtype=torch.float32)
    if bool((t == t[:, :1]).all()):
        return t[:, :1].to(dev)
    return t.repeat_interleave(counts, dim=1).to(dev)


# ---- per-config run bookkeeping ------------------------------------------------------------------------------
@dataclass
class _Track:
    """What train_run keeps for one run: its logger, summary, logged losses, divergence monitor and verdict."""

    cfg: RunConfig
    logger: RunLogger
    start: float
    summary: dict[str, float] = field(default_factory=dict)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    monitor: DivergenceMonitor = field(init=False)
    result: RunResult | None = None

    def __post_init__(self) -> None:
        self.monitor = DivergenceMonitor(self.cfg.train.divergence_factor)

    def finish(self, status: str, reason: str) -> None:
        self.result = finish_run(self.logger, self.summary, status, reason, self.start)


def train_batched(cfgs: Sequence[RunConfig], loggers: Sequence[RunLogger],
                  extra_tags: Sequence[dict[str, str]] | None = None) -> list[RunResult]:
    """Train ``cfgs`` (one shape, see ``shape_key``) as one batched model; log config c through ``loggers[c]``
    exactly as ``train_run(cfgs[c], loggers[c], extra_tags[c])`` would, and return the C results.

    Incompatible configs raise BatchError before anything is logged. A config that diverges ends as ``diverged``
    while the others go on; an exception during training marks every unfinished config ``failed``.
    """
    check_batchable(cfgs)
    if len(loggers) != len(cfgs) or (extra_tags is not None and len(extra_tags) != len(cfgs)):
        raise BatchError(f"{len(cfgs)} configs need as many loggers (got {len(loggers)}) and extra_tags")
    start = time.perf_counter()
    tracks = [_Track(cfg, logger, start) for cfg, logger in zip(cfgs, loggers, strict=True)]
    for c, track in enumerate(tracks):
        tags = {schema.T_BATCH_SIZE: str(len(cfgs)), schema.T_BATCH_INDEX: str(c),
                **(extra_tags[c] if extra_tags else {})}
        begin_run(track.cfg, track.logger, tags)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LAYOUT_WARNING)
            _train(tracks)
    except Exception as exc:  # as in train_run: a broken group is recorded, not lost
        for track in tracks:
            if track.result is None:
                track.finish(*fail_run(track.logger, exc))
    return [track.result for track in tracks]


class _Streams:
    """Training batches for every config, (C, B, T): one TokenBatches per distinct seed, so configs that share a
    seed read the same windows as their separate runs would and the host builds each batch once."""

    def __init__(self, cfgs: Sequence[RunConfig], dev: torch.device) -> None:
        cfg = cfgs[0]
        seeds = sorted({c.train.seed for c in cfgs})
        self.streams = [TokenBatches(cfg.data, cfg.model.vocab_size, cfg.model.seq_len, cfg.train.batch_size, s)
                        for s in seeds]
        self.which = torch.tensor([seeds.index(c.train.seed) for c in cfgs], device=dev)
        self.n, self.dev = len(cfgs), dev

    def _spread(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dev, non_blocking=True)
        return x.expand(self.n, *x.shape[1:]) if x.shape[0] == 1 else x.index_select(0, self.which)

    def next_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(s.next_train() for s in self.streams), strict=True)
        return self._spread(torch.stack(xs)), self._spread(torch.stack(ys))

    def val_batches(self, n_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The fixed held-out windows (seed-independent), the same for every config."""
        return [(self._spread(x[None]), self._spread(y[None])) for x, y in self.streams[0].val_batches(n_batches)]


def _train(tracks: list[_Track]) -> None:
    """The loop of train.py's ``_train`` over all configs at once; one host sync per log interval for all C."""
    cfgs = [t.cfg for t in tracks]
    cfg = cfgs[0]
    dev = resolve_device(cfg.train.device)
    for t in tracks:
        t.logger.set_tags({schema.T_DEVICE: describe_device(dev)})
    data = _Streams(cfgs, dev)
    val_batches = data.val_batches(cfg.train.eval_batches)
    on_cuda = dev.type == "cuda"
    model = BatchedGPT(cfgs, dev, torch.bfloat16 if on_cuda else torch.float32)
    for t, derived in zip(tracks, model.derived, strict=True):
        t.logger.log_params(derived)
    opt = BatchedAdamW(model, cfgs, dev)
    loss_fn = torch.compile(model.losses) if cfg.train.compile and on_cuda else model.losses
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()
    total, log_every, eval_every = cfg.steps, cfg.train.log_every, cfg.train.eval_every
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    peak = peak_flops(dev)
    live = list(range(len(tracks)))

    def diverge(c: int, div: Divergence) -> None:
        t = tracks[c]
        summarise(t.summary, t.train_losses, t.val_losses, div.step, tokens_per_step)
        t.summary[schema.S_DIVERGED_STEP] = div.step
        t.finish(schema.STATUS_DIVERGED, str(div))
        opt.freeze(c)
        live.remove(c)

    loss_acc = torch.zeros(len(tracks), device=dev)
    n_acc = 0
    t_train = t_last = time.perf_counter()
    steps_last = 0
    for step in range(total):
        x, y = data.next_train()
        with autocast:
            losses = loss_fn(x, y)
        model.zero_grad()
        losses.sum().backward()  # d(sum)/d(loss_c) = 1: each config gets exactly its own gradient
        grad_norm = opt.clip_grad_norm()
        if step == 0:
            for c, initial in enumerate(losses.detach().tolist()):
                tracks[c].summary[schema.S_INITIAL_LOSS] = initial
                try:
                    tracks[c].monitor.start(initial)
                except Divergence as div:
                    diverge(c, div)
        opt.step()
        loss_acc += losses.detach().float()
        n_acc += 1
        last = step == total - 1
        if (step + 1) % log_every == 0 or last:
            sums, norms = torch.stack([loss_acc, grad_norm.float()]).tolist()  # the one host sync per interval
            loss_acc.zero_()
            now = time.perf_counter()
            tps = (step + 1 - steps_last) * tokens_per_step / max(now - t_last, 1e-9)  # per config
            t_last, steps_last = now, step + 1
            for c in list(live):
                mean_loss = sums[c] / n_acc
                metrics = {schema.M_TRAIN_LOSS: mean_loss, schema.M_LR_SCALE: lr_scale(step, total, cfgs[c].optim),
                           schema.M_GRAD_NORM: norms[c], schema.M_TOKENS_PER_S: tps}
                if peak:
                    metrics[schema.M_MFU] = tps * model.flops_per_token / peak
                tracks[c].logger.log_metrics(metrics, step=step + 1)
                tracks[c].train_losses.append(mean_loss)
                try:
                    tracks[c].monitor.check_train(mean_loss, step + 1)
                except Divergence as div:
                    diverge(c, div)
            n_acc = 0
        if live and ((step + 1) % eval_every == 0 or last):
            vals = _evaluate(loss_fn, val_batches, autocast)
            for c in list(live):
                tracks[c].logger.log_metrics({schema.M_VAL_LOSS: vals[c]}, step=step + 1)
                tracks[c].val_losses.append(vals[c])
                try:
                    tracks[c].monitor.check_val(vals[c], step + 1)
                except Divergence as div:
                    diverge(c, div)
        if not live:
            return
    elapsed = time.perf_counter() - t_train
    for c in live:
        t = tracks[c]
        t.summary[schema.S_TOKENS_PER_S] = total * tokens_per_step / elapsed
        if peak:
            t.summary[schema.S_MFU] = t.summary[schema.S_TOKENS_PER_S] * model.flops_per_token / peak
        summarise(t.summary, t.train_losses, t.val_losses, total, tokens_per_step)
        t.finish(schema.STATUS_OK, "")


@torch.no_grad()
def _evaluate(loss_fn: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], autocast: Any) -> list[float]:
    """Mean validation loss per config over the fixed held-out batches (train.py's ``evaluate``, batched)."""
    total = None
    for x, y in batches:
        with autocast:
            loss = loss_fn(x, y, z_loss=False).float()
        total = loss if total is None else total + loss
    return [v / len(batches) for v in total.tolist()]


# ---- sweep integration ---------------------------------------------------------------------------------------
def execute_batched_tasks(tasks: Sequence[Any]) -> list[Any]:
    """Train a group of sweep tasks (``executors.SweepTask`` whose configs share a shape) with ``train_batched``,
    each into its own MLflow run, and return one ``executors.TaskResult`` per task. Like ``execute_task`` it never
    raises on a training or logging error: every task of a group that cannot be set up is reported failed."""
    from trainer import tracking
    from trainer.executors import TaskResult, failed_result

    start = time.perf_counter()
    run_ids: list[str | None] = [None] * len(tasks)
    try:
        cfgs = [RunConfig.from_flat(task.config) for task in tasks]
        with ExitStack() as stack:
            loggers = []
            for i, task in enumerate(tasks):
                tags = {**task.tags, schema.T_STATUS: schema.STATUS_RUNNING}
                logger = stack.enter_context(tracking.run_in_experiment(
                    task.tracking_uri, task.experiment_id, run_name=task.label, tags=tags,
                    parent_run_id=task.parent_run_id))
                run_ids[i] = logger.run_id
                loggers.append(logger)
            results = train_batched(cfgs, loggers, [task.tags for task in tasks])
    except Exception as exc:
        return [failed_result(task, f"{type(exc).__name__}: {exc}", start, rid) for task, rid in zip(tasks, run_ids,
                                                                                               strict=True)]
    wall = time.perf_counter() - start
    return [TaskResult(task.index, rid, r.status, r.reason, r.summary, wall)
            for task, rid, r in zip(tasks, run_ids, results, strict=True)]
