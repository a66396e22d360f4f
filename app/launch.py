"""Start the dashboard: ``streamlit run app/Home.py``, with the first pages' analysis computed while it starts.

``python -m app.launch [--tracking-uri URI] [--no-warm-up] [Streamlit options such as --server.port 8600]``; this
is what ``scripts/dashboard.sh`` runs (``-- --tracking-uri URI``, as after ``streamlit run``, works too). The store
is ``--tracking-uri``, else $MLFLOW_TRACKING_URI, else the shipped ``mlruns/`` (app.data.tracking_uri reads the
same flag inside the app).

The process imports the pages' modules first (in this thread: two threads importing the same import cycles at once
can hand one of them a half-initialised module), then, unless ``--no-warm-up``, computes what the first pages show
(app/warmup.py says what) in a daemon thread while Streamlit starts and the browser fetches its JavaScript. A page
that asks for a result the warm-up is still computing waits for it (Streamlit's cache locks per key), so the
warm-up never costs a result twice, and the first visitor pays at most what is left of it. ``--no-warm-up``
starts exactly as ``streamlit run app/Home.py`` does, which still works on its own: cold.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from trainer import tracking

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "app" / "Home.py"


def parse(argv: list[str]) -> tuple[str, bool, list[str]]:
    """(tracking URI, warm up?, the arguments left for ``streamlit run``)."""
    ap = argparse.ArgumentParser(prog="python -m app.launch", description=__doc__.split("\n")[0], allow_abbrev=False)
    tracking.add_tracking_argument(ap)
    ap.add_argument("--no-warm-up", action="store_true", help="start cold, as `streamlit run app/Home.py`: import "
                                                              "and compute nothing before a page asks")
    # ``streamlit run``'s form, app flags after ``--``, is taken too: only this launcher's flags may follow it.
    cut = argv.index("--") if "--" in argv else len(argv)
    args, rest = ap.parse_known_args(argv[:cut])
    args = ap.parse_args(argv[cut + 1:], namespace=args)
    return tracking.resolve_tracking_uri(args.tracking_uri), not args.no_warm_up, rest


def main(argv: list[str] | None = None) -> None:
    uri, warm, streamlit_args = parse(sys.argv[1:] if argv is None else argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if warm:
        from app import warmup

        import_s = warmup.import_modules()
        # beside the server's start and the browser's first download, not before them
        threading.Thread(target=warmup.warm_quietly, args=(uri, import_s), name="dashboard-warm-up",
                         daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(HOME), *streamlit_args, "--", "--tracking-uri", uri]
    cli.main()


if __name__ == "__main__":
    main()
