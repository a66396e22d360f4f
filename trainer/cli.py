"""``python -m trainer {train,sweep,explain,coord-check,import-jsonl}``.

Every command validates its whole input before doing any work, and prints errors as ``error: <field>: <message>``
with exit code 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from trainer.config import ConfigError, RunConfig, load_config


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set model.width=256 hp.lr=1e-3`` -> overrides; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(item, "--set expects KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_hparams_overrides(path: str) -> dict[str, Any]:
    """The ``config_overrides`` of a recommendation JSON (python -m analysis recommend), checked field by field."""
    try:
        rec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"not valid JSON: {exc}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("config_overrides"), dict):
        raise ConfigError(f"{path}: config_overrides", "missing; expected a mapping of dotted config keys")
    return rec["config_overrides"]


def resolve_config(path: str | None, sets: list[str], hparams: str | None = None) -> RunConfig:
    """Config file, then the recommendation's overrides, then ``--set`` (later wins)."""
    cfg = load_config(path) if path else RunConfig()
    overrides: dict[str, Any] = {}
    if hparams:
        overrides.update(load_hparams_overrides(hparams))
    overrides.update(parse_set(sets))
    return cfg.with_overrides(overrides) if overrides else cfg


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("config", nargs=None if required else "?", help="YAML/JSON run config")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="dotted overrides, e.g. hp.lr=1e-3")


def cmd_explain(args: argparse.Namespace) -> int:
    from trainer.parameterization import explain_rows, explain_text

    cfg = resolve_config(args.config, args.set, args.hparams)
    print(json.dumps(explain_rows(cfg), indent=1) if args.json else explain_text(cfg))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainer import schema, tracking
    from trainer.train import train_run

    cfg = resolve_config(args.config, args.set, args.hparams)
    if args.jsonl:
        from trainer.config import config_hash
        from trainer.runlog import JsonlRunLogger

        result = train_run(cfg, JsonlRunLogger(args.jsonl, f"run-{config_hash(cfg)}-{cfg.train.seed}"))
    else:
        uri = tracking.resolve_tracking_uri(args.tracking_uri)
        with tracking.start_run(uri, args.experiment, run_name=args.run_name) as logger:
            result = train_run(cfg, logger)
    loss = result.summary.get(schema.S_FINAL_VAL_LOSS, float("nan"))
    print(f"{result.status}: final val loss {loss:.4f}" + (f" ({result.reason})" if result.reason else ""))
    return 0 if result.status != schema.STATUS_FAILED else 1


def cmd_coord_check(args: argparse.Namespace) -> int:
    from trainer.coord_check import log_coord_check, run_coord_check
    from trainer.coord_stats import format_table

    cfg = resolve_config(args.config, args.set)
    values = [int(v) for v in args.values.split(",")]
    rows = run_coord_check(cfg, args.axis, values, args.param.split(","), steps=args.steps, lr=args.lr)
    print(format_table(rows, args.axis))
    if args.out:
        Path(args.out).write_text(json.dumps(rows))
        print(f"wrote {len(rows)} rows to {args.out}")
    if args.experiment:
        from trainer import tracking

        n = log_coord_check(rows, tracking.resolve_tracking_uri(args.tracking_uri), args.experiment)
        print(f"logged {n} coordinate-check runs to experiment {args.experiment!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from trainer import compact, sweep, tracking

    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one config, logged to MLflow (or JSONL)")
    _add_config_args(p)
    p.add_argument("--hparams", help="recommendation JSON whose config_overrides are applied")
    tracking.add_tracking_argument(p)
    p.add_argument("--experiment", default="default", help="MLflow experiment name")
    p.add_argument("--run-name", default=None)
    p.add_argument("--jsonl", metavar="DIR", help="log to DIR/*.jsonl instead of MLflow (machines without mlflow)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("explain", help="print the effective per-group table (init std, fwd mult, lr, eps, wd, betas)")
    _add_config_args(p)
    p.add_argument("--hparams", help="recommendation JSON whose config_overrides are applied")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("coord-check", help="activation size per module over widths or depths, first steps")
    _add_config_args(p, required=False)
    p.add_argument("--axis", choices=("width", "depth"), default="width")
    p.add_argument("--values", default="64,128,256,512", help="comma-separated widths or depths")
    p.add_argument("--param", default="sp,mup", help="comma-separated parameterizations")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-2, help="a large LR makes width dependence visible quickly")
    p.add_argument("--out", help="write the rows as JSON")
    p.add_argument("--experiment", help="also log one MLflow run per (parameterization, value) to this experiment")
    tracking.add_tracking_argument(p)
    p.set_defaults(func=cmd_coord_check)

    p = sub.add_parser("sweep", help="run (or resume) a sweep spec")
    sweep.add_sweep_arguments(p)
    p.set_defaults(func=sweep.cli_sweep)

    p = sub.add_parser("import-jsonl", help="import JSONL run logs (e.g. from a GPU box) into MLflow")
    tracking.add_import_arguments(p)
    p.set_defaults(func=tracking.cli_import_jsonl)

    p = sub.add_parser("compact-store", help="thin metric histories of a SQLite store for shipping, then VACUUM")
    compact.add_compact_arguments(p)
    p.set_defaults(func=compact.cli_compact)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
