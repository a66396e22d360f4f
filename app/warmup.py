"""Compute, in the dashboard process and before any browser asks, what the first pages will need.

Why: Streamlit runs a page only when a browser session connects, so without this the first visitor pays for
importing the page's modules (Altair, numpy, scipy.special, pandas and pyarrow for tables: ~0.7 s), loading the
runs (~0.5 s at 10k runs) and the optima with their bootstrap (~0.3 s) on top of the browser's own start. ``warm``
fills the same caches the pages read (app.data's ``st.cache_resource`` functions are process-wide and lock per
key, so a page that asks while the warm-up is computing waits for that result instead of computing it twice).

It warms what a user meets first: the Overview/Sweeps summary of every experiment, and for the default experiment
(the one whose runs started last) its classified runs, the optimum table of its first swept hyperparameter and the
transfer fits along every scale axis at the default τ, and the charts of the Transfer page's first view: the page
exactly as it opens without URL choices.
Other experiments and choices are computed on first use, as before. ``app.launch`` calls ``import_modules`` before
Streamlit starts and ``warm_quietly`` in a daemon thread beside it.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import sys
import threading
import time

# Imported by the pages on first use; st.dataframe converts polars through narwhals, pyarrow and pandas.
MODULES = ("pandas", "pyarrow", "pyarrow.pandas_compat", "altair", "narwhals", "app.common", "app.data",
           "app.transfer_view", "analysis.summary")
# Streamlit's own modules that its first script run imports lazily (~0.4 s, most of it the emoji and icon regexes
# behind st.success/st.warning and page icons). Internal names that may move between Streamlit versions, so a
# missing one is skipped: it only means that first run pays for it, as it would without the warm-up.
STREAMLIT_LAZY = ("streamlit.emojis", "streamlit.material_icon_names", "streamlit.components.v2.manifest_scanner",
                  "streamlit.runtime.scriptrunner.magic_funcs", "narwhals._polars.dataframe")


def import_modules() -> float:
    """Import what the pages import on first use (``MODULES``, ``STREAMLIT_LAZY``); returns the seconds it took."""
    t0 = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    for name in STREAMLIT_LAZY:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # Streamlit's first element of a process asks env_util.is_repl(), i.e. inspect.stack(), whose first call maps
    # every loaded module to its real path (~0.3 s for ~1,800 modules); later calls reuse inspect's map.
    inspect.stack()
    return time.perf_counter() - t0


def warm(uri: str) -> dict[str, float]:
    """Fill the analysis caches for ``uri`` (module docstring); returns the seconds each stage took. Call
    ``import_modules`` first, from the main thread. Errors propagate: the caller decides what to say."""
    times: dict[str, float] = {}
    from analysis.summary import swept_hps, varied_axes
    from analysis.transfer import DEFAULT_TAU
    from app import data
    from app import transfer_view as tv

    t0 = time.perf_counter()
    data.sweep_summary(uri)
    times["sweep summary"] = time.perf_counter() - t0
    exp = data.default_experiment(uri)
    if exp is None or exp not in data.experiments(uri):
        return times
    t0 = time.perf_counter()
    objective = data.objectives(uri, exp)[0]
    prep = data.prepared(uri, exp, objective)
    hps = swept_hps(prep) if not prep.is_empty() else []
    axes = varied_axes(prep) if hps else []
    if axes:
        opt = data.optima(uri, exp, objective, hps[0])
        fits = [data.transfers(uri, exp, objective, hps[0], axis, DEFAULT_TAU) for axis in axes]
        times[f"experiment {exp!r}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = fits[0]
        if results:  # the Transfer page's first view: first parameterization, first group (transfer_view)
            first = tv.param_groups(results, tv.parameterizations(results)[0])[0][0]
            rows = data.group_rows(opt, first.group, axes[0])
            tv.transfer_panel(first, opt, prep, every_run=tv.every_run_default([rows]))
        times["charts"] = time.perf_counter() - t0
    return times


class _NotFrom(logging.Filter):
    """Drops the records logged from one thread."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self.thread_name


def warm_quietly(uri: str, import_s: float = 0.0) -> None:
    """``warm`` for a background thread: one line on stderr with what it did (``import_s``: what
    ``import_modules`` took before), or why it stopped. It never raises, since the pages report a broken store
    themselves, with the run or file it concerns."""
    t0 = time.perf_counter()
    # The cached functions' spinners look for a page to draw on; there is none in this thread, and Streamlit logs
    # that per call. A filter, not a level: Streamlit resets its loggers' levels when its server starts.
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    only_others = _NotFrom(threading.current_thread().name)
    quiet.addFilter(only_others)
    try:
        times = warm(uri)
    except Exception as exc:  # the store may be empty, locked or malformed; the page will say which
        print(f"dashboard warm-up of {uri} stopped after {time.perf_counter() - t0:.1f} s: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return
    finally:
        quiet.removeFilter(only_others)
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in {"imports": import_s, **times}.items())
    print(f"dashboard warm-up of {uri} done in {import_s + time.perf_counter() - t0:.1f} s ({stages})",
          file=sys.stderr)
