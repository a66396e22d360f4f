"""Export the dashboard's Transfer charts as PNG files with their verdict lines, for docs/results.md.

The figures in the docs are the app's own charts (app.charts via app.transfer_view), built from the same cached
analysis calls, so a figure in the docs and the page a user opens can never disagree. Usage:

    python -m app.figures --out docs/figures [--tracking-uri URI] [--only width,depth]

writes ``<experiment>-<axis>-<hp>-<group>.png`` per analysed group and prints one markdown line per figure with the
verdict in words and numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import altair as alt

from analysis.classify import default_objective
from analysis.summary import swept_hps, varied_axes
from analysis.transfer import differing_keys
from app import charts, data
from app import transfer_view as tv


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "all"


def export_experiment(uri: str, experiment: str, out: Path, tau: float = 0.005) -> list[str]:
    """One PNG per (axis, hyperparameter, group) of ``experiment``; returns the markdown lines describing them."""
    raw = data.runs(uri, experiment)
    objective = default_objective(raw)
    prep = data.prepared(uri, experiment, objective)
    lines = []
    for hp in swept_hps(prep):
        opt = data.optima(uri, experiment, objective, hp)
        for axis in varied_axes(prep):
            results = data.transfers(uri, experiment, objective, hp, axis, tau)
            keys = differing_keys(results)  # label groups by what tells them apart, as the Transfer page does
            for result in results:
                view = tv.build(result, opt, prep)
                left = tv.loss_chart(view)
                right = charts.optimum_scale_chart(view.scale_rows, view.law, hp=hp, axis=axis)
                group = data.group_label({k: result.group.get(k) for k in keys})
                name = f"{experiment}-{axis}-{_slug(hp)}-{_slug(group)}.png"
                alt.hconcat(left, right).save(str(out / name), scale_factor=1.5)
                lines.append(f"- `{name}` ({group}): {tv.verdict_text(result)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--only", default="", help="comma-separated experiments (default: all)")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or data.tracking_uri()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or data.experiments(uri)
    for name in names:
        try:
            lines = export_experiment(uri, name, out)
        except Exception as exc:  # one experiment that cannot be analysed must not stop the others
            print(f"- {name}: not exported ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        print(f"### {name}", *lines, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
