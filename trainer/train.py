"""Train one config and log it through a RunLogger.

Never loses a run: divergence (NaN/inf, or a smoothed loss far above the start) ends training early with status
``diverged`` and everything logged so far is kept; an exception inside training is recorded as ``failed`` with its
reason instead of killing a sweep. On CUDA: fused AdamW and bf16 autocast (fp32 master weights and fp32 loss);
on CPU: fp32 and fused AdamW (bf16 autocast is ~30x slower on CPUs). Losses are synced to the host only every
``log_every`` steps so the GPU is never stalled by logging.
"""

from __future__ import annotations

import math
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from trainer import schema
from trainer.config import RunConfig, config_hash
from trainer.data import TokenBatches
from trainer.model import GPT
from trainer.optim import apply_schedule, lr_scale, make_optimizer
from trainer.parameterization import explain_rows
from trainer.provenance import provenance_tags
from trainer.runlog import RunLogger

# Dense bf16 peak FLOP/s by device-name substring, for MFU (H100/H200 SXM: 989 TFLOP/s, NVIDIA datasheets).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


@dataclass
class RunResult:
    """Outcome of one run; ``summary`` holds the schema.S_* metrics that were logged."""

    status: str
    reason: str
    summary: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available on this machine")
    return dev


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_flops(dev: torch.device) -> float | None:
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def derived_params(cfg: RunConfig, model: GPT) -> dict[str, float | int]:
    r = cfg.ratios()
    return {
        schema.P_N_PARAMS: model.n_params(),
        schema.P_N_PARAMS_NON_EMB: model.n_params(non_embedding=True),
        schema.P_STEPS: cfg.steps,
        schema.P_HEAD_DIM: cfg.model.head_dim_eff,
        schema.P_N_HEADS: cfg.model.n_heads_eff,
        schema.P_D_FF: cfg.model.d_ff,
        schema.P_WIDTH_RATIO: r["m_width"],
        schema.P_DEPTH_RATIO: r["m_depth"],
        schema.P_BATCH_RATIO: r["m_batch"],
        schema.P_TOKENS_RATIO: r["m_tokens"],
        schema.P_N_PARAMS_ACTIVE: model.n_params_active(),
        schema.P_TOP_K: cfg.top_k_eff if cfg.model.n_experts else 0,
        schema.P_D_EXPERT: cfg.model.d_expert if cfg.model.n_experts else 0,
    }


def moe_metrics(model: GPT) -> dict[str, float]:
    """Routing health averaged over MoE layers (from the last training forward): load CV, entropy, dropped."""
    layers = [moe.stats for moe in model.moe_layers() if moe.stats]
    if not layers:
        return {}
    mean = {key: float(torch.stack([s[key] for s in layers]).mean()) for key in ("load_cv", "entropy", "dropped")}
    return {schema.M_MOE_LOAD_CV: mean["load_cv"], schema.M_MOE_ENTROPY: mean["entropy"],
            schema.M_MOE_DROPPED: mean["dropped"]}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], dev: torch.device,
             autocast: object) -> float:
    model.eval()
    total = torch.zeros((), device=dev)
    for x, y in batches:
        with autocast:
            _, loss = model(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
        total += loss.float()
    model.train()
    return float(total) / len(batches)


class Divergence(Exception):
    """A run ends as diverged at ``step``; the message is the reason logged in run.status_reason."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step = step


@dataclass
class DivergenceMonitor:
    """The divergence rules, shared by train_run and the batched trainer: a non-finite loss, or an EMA of the
    logged train loss above ``factor`` × the first step's loss. Raises Divergence."""

    factor: float
    initial: float = math.nan
    ema: float | None = None

    def start(self, initial: float) -> None:
        self.initial = initial
        if not math.isfinite(initial):
            raise Divergence(0, f"non-finite loss {initial} at step 0")

    def check_train(self, mean_loss: float, step: int) -> None:
        if not math.isfinite(mean_loss):
            raise Divergence(step, f"non-finite train loss ({mean_loss}) by step {step}")
        self.ema = mean_loss if self.ema is None else 0.7 * self.ema + 0.3 * mean_loss
        if self.ema > self.factor * self.initial:
            raise Divergence(step, f"smoothed train loss {self.ema:.3f} above {self.factor}x the initial "
                             f"{self.initial:.3f} at step {step}")

    def check_val(self, val: float, step: int) -> None:
        if not math.isfinite(val):
            raise Divergence(step, f"non-finite validation loss at step {step}")


def begin_run(cfg: RunConfig, logger: RunLogger, extra_tags: dict[str, str] | None = None) -> None:
    """Everything a run logs before training: identity and provenance tags (status running), the flat config as
    params, the config and its effective per-group table as artifacts."""
    logger.set_tags({
        schema.T_RUN_KIND: schema.RUN_KIND_TRAIN,
        schema.T_SOURCE: "trainer",
        schema.T_CONFIG_HASH: config_hash(cfg),
        schema.T_TRAINER_VERSION: str(schema.SCHEMA_VERSION),
        schema.T_STATUS: schema.STATUS_RUNNING,
        **provenance_tags(),
        **(extra_tags or {}),
    })
    logger.log_params(cfg.to_flat())
    logger.log_json(schema.A_CONFIG, cfg.to_dict())
    logger.log_json(schema.A_EFFECTIVE_GROUPS, explain_rows(cfg))


def finish_run(logger: RunLogger, summary: dict[str, float], status: str, reason: str, start: float) -> RunResult:
    """Everything a run logs after training: wall time and summary metrics, the final status, a flush."""
    summary[schema.S_WALL_S] = time.perf_counter() - start
    logger.log_metrics(summary, step=int(summary.get(schema.S_STEPS_DONE, 0)))
    logger.set_tags({schema.T_STATUS: status, schema.T_STATUS_REASON: reason})
    logger.flush()
    return RunResult(status=status, reason=reason, summary=summary)


def fail_run(logger: RunLogger, exc: Exception) -> tuple[str, str]:
    """A broken run is recorded, not lost: status failed, the exception as reason, its traceback as an artifact."""
    reason = f"{type(exc).__name__}: {exc}"
    logger.log_json("error.json", {"error": reason, "traceback": traceback.format_exc()})
    return schema.STATUS_FAILED, reason


def train_run(cfg: RunConfig, logger: RunLogger, extra_tags: dict[str, str] | None = None) -> RunResult:
    """Train ``cfg`` to completion (or divergence) and log it; see the module docstring for the guarantees."""
    start = time.perf_counter()
    begin_run(cfg, logger, extra_tags)
    summary: dict[str, float] = {}
    try:
        status, reason = _train(cfg, logger, summary)
    except Exception as exc:  # a broken run is recorded, not lost; the sweep goes on
        status, reason = fail_run(logger, exc)
    return finish_run(logger, summary, status, reason, start)


def _train(cfg: RunConfig, logger: RunLogger, summary: dict[str, float]) -> tuple[str, str]:
    dev = resolve_device(cfg.train.device)
    logger.set_tags({schema.T_DEVICE: describe_device(dev)})
    torch.manual_seed(cfg.train.seed)
    data = TokenBatches(cfg.data, cfg.model.vocab_size, cfg.model.seq_len, cfg.train.batch_size, cfg.train.seed)
    val_batches = data.val_batches(cfg.train.eval_batches)
    model = GPT(cfg)
    model.init_parameters(cfg.train.seed)
    logger.log_params(derived_params(cfg, model))
    model.to(dev)
    optimizer = make_optimizer(model, dev)
    step_fn = torch.compile(model) if cfg.train.compile and dev.type == "cuda" else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    total = cfg.steps
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    peak = peak_flops(dev)
    flops_per_token = model.flops_per_token()

    loss_acc = torch.zeros((), device=dev)
    n_acc = 0
    monitor = DivergenceMonitor(cfg.train.divergence_factor)
    train_losses: list[float] = []
    val_losses: list[float] = []
    t_train = t_last = time.perf_counter()
    steps_last = 0
    step = 0
    try:
        for step in range(total):
            scale = lr_scale(step, total, cfg.optim)
            apply_schedule(optimizer, scale)
            x, y = data.next_train()
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with autocast:
                _, loss = step_fn(x, y, cfg.optim.z_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if step == 0:
                summary[schema.S_INITIAL_LOSS] = float(loss.detach())
                monitor.start(summary[schema.S_INITIAL_LOSS])
            optimizer.step()
            loss_acc += loss.detach().float()
            n_acc += 1
            last = step == total - 1
            if (step + 1) % cfg.train.log_every == 0 or last:
                mean_loss = float(loss_acc) / n_acc  # the one host sync per log interval
                loss_acc.zero_()
                n_acc = 0
                now = time.perf_counter()
                tps = (step + 1 - steps_last) * tokens_per_step / max(now - t_last, 1e-9)
                t_last, steps_last = now, step + 1
                metrics = {schema.M_TRAIN_LOSS: mean_loss, schema.M_LR_SCALE: scale,
                           schema.M_GRAD_NORM: float(grad_norm), schema.M_TOKENS_PER_S: tps}
                if peak:
                    metrics[schema.M_MFU] = tps * flops_per_token / peak
                metrics.update(moe_metrics(model))
                logger.log_metrics(metrics, step=step + 1)
                train_losses.append(mean_loss)
                monitor.check_train(mean_loss, step + 1)
            if (step + 1) % cfg.train.eval_every == 0 or last:
                val = evaluate(model, val_batches, dev, autocast)
                logger.log_metrics({schema.M_VAL_LOSS: val}, step=step + 1)
                val_losses.append(val)
                monitor.check_val(val, step + 1)
    except Divergence as div:
        _summarise_moe(model, logger, summary)
        summarise(summary, train_losses, val_losses, div.step, tokens_per_step)
        summary[schema.S_DIVERGED_STEP] = div.step
        return schema.STATUS_DIVERGED, str(div)
    elapsed = time.perf_counter() - t_train
    summary[schema.S_TOKENS_PER_S] = total * tokens_per_step / elapsed
    if peak:
        summary[schema.S_MFU] = summary[schema.S_TOKENS_PER_S] * flops_per_token / peak
    _summarise_moe(model, logger, summary)
    summarise(summary, train_losses, val_losses, total, tokens_per_step)
    return schema.STATUS_OK, ""


def _summarise_moe(model: GPT, logger: RunLogger, summary: dict[str, float]) -> None:
    """MoE runs: last routing statistics as summaries, and each layer's token fractions per expert as an artifact."""
    last = moe_metrics(model)
    if not last:
        return
    summary[schema.S_MOE_LOAD_CV] = last[schema.M_MOE_LOAD_CV]
    summary[schema.S_MOE_ENTROPY] = last[schema.M_MOE_ENTROPY]
    logger.log_json(schema.A_MOE_LOAD, [moe.stats["load"].tolist() for moe in model.moe_layers() if moe.stats])


def summarise(summary: dict[str, float], train_losses: list[float], val_losses: list[float], steps_done: int,
               tokens_per_step: int) -> None:
    """Summary metrics from the logged points; values that do not exist (a run diverged before any eval) are left out
    rather than invented."""
    summary[schema.S_STEPS_DONE] = steps_done
    summary[schema.S_TOKENS_SEEN] = steps_done * tokens_per_step
    if train_losses:
        tail = train_losses[-max(1, len(train_losses) // 10):]
        summary[schema.S_FINAL_TRAIN_LOSS] = sum(tail) / len(tail)
        summary[schema.S_MAX_TRAIN_LOSS] = max(train_losses)
        finite = [v for v in train_losses if math.isfinite(v)]
        if finite:
            summary[schema.S_MIN_TRAIN_LOSS] = min(finite)
    if val_losses:
        summary[schema.S_FINAL_VAL_LOSS] = val_losses[-1]
        finite = [v for v in val_losses if math.isfinite(v)]
        if finite:
            summary[schema.S_BEST_VAL_LOSS] = min(finite)
