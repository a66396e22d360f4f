"""Coordinate check (spec §7.10, §8.2-8.3; mup README): per-module activation size, and its change since step 0,
over widths or depths for the first few steps at a large LR.

Under μP/CompleteP the curves must be flat in width (and, for CompleteP, in depth); under SP the change of the
logits and of the hidden outputs grows with width. Activations are read with forward hooks on every module of every
block (averaged over blocks per module type), on one fixed batch trained for ``steps`` steps, so each step's
forward is comparable to step 0 element by element.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from trainer import schema
from trainer.config import RunConfig
from trainer.coord_stats import HOOKED
from trainer.data import TokenBatches
from trainer.model import GPT
from trainer.optim import make_optimizer


def _coord_config(cfg: RunConfig, axis: str, value: int, param: str, base: int, steps: int, lr: float) -> RunConfig:
    overrides = {
        f"model.{axis}": value, "param.name": param, f"param.base_{axis}": base, "hp.lr": lr,
        "train.steps": steps, "train.tokens": 0, "optim.schedule": "constant", "optim.warmup_frac": 0.0,
        "optim.grad_clip": 0.0, "train.device": "cpu",
    }
    return cfg.with_overrides(overrides)


def _measure(cfg: RunConfig, steps: int) -> dict[str, list[tuple[float, float]]]:
    """module -> [(mean |x_t|, mean |x_t − x_0|) for t = 0..steps-1]."""
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg)
    model.init_parameters(cfg.train.seed)
    opt = make_optimizer(model, torch.device("cpu"))
    data = TokenBatches(cfg.data, cfg.model.vocab_size, cfg.model.seq_len, cfg.train.batch_size, cfg.train.seed)
    x, y = data.next_train()
    captured: dict[str, list[torch.Tensor]] = defaultdict(list)

    def hook(name: str):
        def fn(_module: torch.nn.Module, _inp: object, out: torch.Tensor) -> None:
            captured[name].append(out.detach().float())
        return fn

    handles = [model.token_emb.register_forward_hook(hook("token_emb"))]
    for block in model.blocks:
        handles += [getattr(block, m).register_forward_hook(hook(m)) for m in HOOKED[1:]]
        handles.append(block.register_forward_hook(hook("resid")))
    first: dict[str, list[torch.Tensor]] = {}
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(steps):
        captured.clear()
        logits, loss = model(x, y)
        captured["logits"].append(logits.detach().float())
        if not first:
            first = {k: list(v) for k, v in captured.items()}
        for name, tensors in captured.items():
            act = float(np.mean([t.abs().mean().item() for t in tensors]))
            delta = float(np.mean([(t - t0).abs().mean().item() for t, t0 in zip(tensors, first[name], strict=True)]))
            out[name].append((act, delta))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for h in handles:
        h.remove()
    return out


def run_coord_check(cfg: RunConfig, axis: str, values: list[int], params: list[str], steps: int = 5,
                    lr: float = 1e-2) -> list[dict[str, float | int | str]]:
    """Rows {param, axis, value, module, step, act, delta}; the smallest value is the base shape."""
    base = min(values)
    rows: list[dict[str, float | int | str]] = []
    for param in params:
        for value in values:
            c = _coord_config(cfg, axis, value, param, base, steps, lr)
            for module, series in _measure(c, steps).items():
                for step, (act, delta) in enumerate(series):
                    rows.append({"param": param, "axis": axis, "value": value, "module": module, "step": step,
                                 "act": act, "delta": delta})
    return rows


def log_coord_check(rows: list[dict], tracking_uri: str, experiment: str) -> int:
    """One MLflow run per (parameterization, axis value): metrics coord.<module>.act / .delta against the step,
    tagged run.kind=coord_check so sweep analysis ignores them and the dashboard can plot them."""
    from trainer import tracking
    from trainer.provenance import provenance_tags

    keys = sorted({(r["param"], r["axis"], r["value"]) for r in rows})
    for param, axis, value in keys:
        mine = [r for r in rows if (r["param"], r["axis"], r["value"]) == (param, axis, value)]
        tags = {schema.T_RUN_KIND: schema.RUN_KIND_COORD, schema.T_SOURCE: "trainer", **provenance_tags()}
        with tracking.start_run(tracking_uri, experiment, run_name=f"coord-{param}-{axis}{value}", tags=tags) as log:
            log.log_params({schema.P_PARAMETERIZATION: param, schema.AXES[axis]: value, "coord.axis": axis})
            for r in mine:
                log.log_metrics({f"{schema.COORD_PREFIX}{r['module']}.act": r["act"],
                                 f"{schema.COORD_PREFIX}{r['module']}.delta": r["delta"]}, step=r["step"])
            log.log_json(schema.A_COORD_CHECK, mine)
            log.set_tags({schema.T_STATUS: schema.STATUS_OK})
    return len(keys)
