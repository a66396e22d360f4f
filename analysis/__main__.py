"""Command line: ``python -m analysis {report,import,recommend} …`` (see docs/analysis.md).

Exit codes: 0 ok, 2 bad arguments or data (with a one-line message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_target(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, text.split(",")):
        if "=" not in part:
            raise ValueError(f"target part {part!r} is not axis=value")
        k, v = part.split("=", 1)
        out[k.strip()] = float(v)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    rp = sub.add_parser("report", help="print the transfer verdict table for every axis")
    rp.add_argument("--experiment", required=True, action="append", help="MLflow experiment name (repeatable)")
    rp.add_argument("--tracking-uri", default=None, help="default: sqlite:///<repo>/mlruns/mlflow.db")
    rp.add_argument("--objective", default=None, help="summary metric (default: final val loss, else train)")
    rp.add_argument("--hp", action="append", default=None, help="hyperparameter(s); default: every swept one")
    rp.add_argument("--tau", type=float, default=0.005, help="tolerable relative loss penalty (default 0.5%%)")
    rp.add_argument("--json", type=Path, default=None, help="also write the full result as JSON")

    ip = sub.add_parser("import", help="import a long-format CSV/Parquet sweep into an MLflow experiment")
    ip.add_argument("data", type=Path)
    ip.add_argument("--mapping", type=Path, required=True)
    ip.add_argument("--experiment", required=True)
    ip.add_argument("--tracking-uri", default=None)
    ip.add_argument("--replace", action="store_true", help="delete the experiment's existing runs first")

    cp = sub.add_parser("recommend", help="hyperparameters for a target scale, as validated JSON")
    cp.add_argument("--experiment", required=True, action="append")
    cp.add_argument("--tracking-uri", default=None)
    cp.add_argument("--target", required=True, help="e.g. width=4096,depth=8")
    cp.add_argument("--param", default=None, help="parameterization (param.name)")
    cp.add_argument("--objective", default=None)
    cp.add_argument("--tau", type=float, default=0.005)
    cp.add_argument("--out", type=Path, default=None, help="write here (default: print)")
    args = p.parse_args(argv)

    from jsonschema import ValidationError

    from analysis.importers import MappingError
    from analysis.recommend import RecommendationError

    try:
        return _run(args)
    except (LookupError, FileNotFoundError, ValueError, MappingError, RecommendationError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from analysis.load import default_tracking_uri, load_runs

    uri = args.tracking_uri or default_tracking_uri()
    if args.cmd == "import":
        from analysis.importers import import_long_table, write_to_mlflow

        sweep = import_long_table(args.data, args.mapping)
        exp_id = write_to_mlflow(sweep, uri, args.experiment, replace=args.replace)
        print(f"imported {sweep.runs.height} runs into experiment {args.experiment!r} (id {exp_id}) at {uri}")
        return 0
    runs = load_runs(uri, args.experiment)
    if args.cmd == "report":
        from analysis.report import analyze, format_report, report_dict

        result = analyze(runs, objective=args.objective, hps=args.hp, tau=args.tau)
        print(format_report(result))
        if args.json:
            args.json.write_text(json.dumps(report_dict(result), indent=2, allow_nan=False) + "\n")
            print(f"wrote {args.json}")
        return 0
    from analysis.classify import default_objective, prepare_runs
    from analysis.recommend import recommend, write_recommendation

    objective = args.objective or default_objective(runs)
    doc = recommend(prepare_runs(runs, objective), _parse_target(args.target), args.param, tau=args.tau,
                    objective=objective, source={"experiment": args.experiment, "tracking_uri": uri})
    if args.out:
        write_recommendation(doc, args.out)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
