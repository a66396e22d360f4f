"""UI pieces shared by the pages: safe text, the experiment picker, error guards and the run detail panel.

Run names, params and tags come from whoever wrote the store, so they are only ever shown through ``st.dataframe``
/ ``st.text`` or through ``md()``, which escapes Markdown; nothing here uses ``unsafe_allow_html``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import altair as alt
import polars as pl
import streamlit as st

from analysis.transfer import DEFAULT_TAU
from app import charts, data, state
from app import transfer_view as tv
from trainer import schema as S

T = TypeVar("T")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~$:])")


def md(text: Any) -> str:
    """Markdown-escaped text: a run named ``[x](javascript:…)`` or ``<img …>`` renders as those characters."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


# Tolerable loss penalties τ the pages offer: analysis-methods.md's 0.1–0.5 % and the looser margins noisy proxies
# need (docs/results.md uses 2 %); any other τ comes through the URL (?tau=0.003) or the analysis CLI's --tau.
TAU_CHOICES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def pick_tau(container: Any = None) -> float:
    """The tolerable loss penalty τ (URL ``?tau=``) as a selectbox of ``TAU_CHOICES``: one click instead of typing a
    fraction, and no number-input component to load (with its expander, ~0.2 s of a first page open)."""
    return state.url_select_number("Loss penalty τ", TAU_CHOICES, "tau", default=DEFAULT_TAU,
                                   format_func=lambda t: f"{t * 100:g} %",
                                   container=container,
                                   help="tolerable relative loss penalty: a drift that costs less than this 'holds'")


def table_md(df: pl.DataFrame) -> str:
    """A small table as Markdown (every cell escaped with ``md``; numbers right-aligned, floats to 4 significant
    digits, booleans as ✓). Why not ``st.dataframe``: its grid is the heaviest component a page can load, ~0.5 s of a
    first page open in a new browser tab here, which a table of a few rows with nothing to sort does not need."""
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "✓" if value else ""
        if isinstance(value, float):
            return md(f"{value:.4g}")
        return md(value)

    align = ["---:" if dtype.is_numeric() else ":---" for dtype in df.dtypes]
    lines = ["| " + " | ".join(md(c) for c in df.columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)


def stop(message: str, kind: str = "info") -> NoReturn:
    """Show a helpful message instead of the rest of the page (empty store, no runs, missing metric …)."""
    getattr(st, kind)(message)
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises; this keeps type checkers honest


def guarded(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call an analysis function; on failure show what could not be computed and why, then stop the page.
    Bad data must read as a message naming the problem, never as a traceback."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # st.stop/st.rerun raise BaseException subclasses and pass through
        stop(f"Could not {what}: {md(type(exc).__name__)}: {md(exc)}", "warning")


def pick_experiment(uri: str, *, key: str = "exp", container: Any = None, only: list[str] | None = None) -> str:
    """Experiment selectbox (URL ``?exp=``); stops with a message when the store has none."""
    names = guarded("open the tracking store", data.experiments, uri) if only is None else only
    if not names:
        stop(f"No experiments in the store {md(uri)}. Make one with `python -m trainer sweep "
             "examples/tiny_sweep.yaml`, or import a sweep with `python -m analysis import`.")
    name, notice = state.url_select("Experiment", names, key, container=container,
                                    default=(lambda: data.default_experiment(uri)) if only is None else None)
    if notice:
        st.warning(md(f"{notice}; showing {name!r}. The store has: {', '.join(names)}"))
    return name


def prepared_or_stop(uri: str, experiment: str, *, key: str = "objective", container: Any = None
                     ) -> tuple[str, pl.DataFrame]:
    """Objective picker (URL ``?objective=``) and the classified runs; stops when nothing can be analysed."""
    raw = guarded(f"load experiment {experiment!r}", data.runs, uri, experiment)
    if raw.is_empty():
        stop(md(f"Experiment {experiment!r} has no runs yet."))
    objective, _ = state.url_select("Objective", data.objectives(uri, experiment), key, container=container,
                                    help="summary metric minimised over the hyperparameter")
    prep = guarded("classify the runs", data.prepared, uri, experiment, objective)
    if prep.is_empty():
        stop(md(f"Experiment {experiment!r} holds only sweep parents or coordinate checks; nothing to analyse "
                "here (see the Coord check page)."))
    if objective not in raw.columns:
        stop(md(f"No run of {experiment!r} logged the objective {objective}; pick another objective."), "warning")
    counts = dict(prep["status"].value_counts().iter_rows())
    if not counts.get("ok"):
        reasons = prep.group_by("status", "reason").len().sort("len", descending=True).head(3)
        why = "; ".join(f"{r['status']} ({r['len']}): {r['reason']}" for r in reasons.iter_rows(named=True))
        stop(md(f"No run of {experiment!r} is usable for {objective}: {why}"), "warning")
    return objective, prep


def every_run(rows: Sequence[pl.DataFrame], container: Any) -> tuple[bool, str]:
    """The 'Every run as a dot' checkbox (URL ``?every_run=``) for groups whose optimum-table ``rows`` are drawn,
    and the words for the chart caption. Shown only where some grid value holds several runs (seeds), since only
    then do one dot per point and every run differ; on by default up to tv.EVERY_RUN_MAX ok runs in all. Returns
    (draw every run, caption words); the counts come from the optimum table (``grid_n``, ``n_runs``)."""
    seeds, n_ok = tv.dot_counts(rows)
    if seeds <= 1:
        return True, "dots are runs"
    with container:
        every = state.url_checkbox("Every run as a dot", "every_run", default=tv.every_run_default(rows))
    if every:
        return True, f"dots are runs (all {n_ok})"
    return False, (f"one dot per point: its median-loss run of up to {seeds} (tick 'Every run as a dot' for all "
                   f"{n_ok}); band = lowest to highest run")


def show_run(uri: str, run: dict[str, Any]) -> None:
    """Training curves (fetched on demand) and effective per-group settings of one run."""
    rid = run.get("run_id")
    st.subheader("Run " + md(run.get("run_name") or rid))
    facts = {k: run.get(k) for k in ("run_id", "experiment", "status", "reason", S.P_PARAMETERIZATION, S.P_LR,
                                    S.T_SOURCE, S.T_SWEEP_NAME, S.T_CONFIG_HASH, S.T_DEVICE) if k in run}
    st.dataframe(pl.DataFrame({"field": list(facts), "value": [str(v) for v in facts.values()]}), hide_index=True)
    left, right = st.columns(2)
    hist = data.history(uri, [rid], [S.M_TRAIN_LOSS, S.M_VAL_LOSS])
    with left:
        if hist.is_empty():
            st.info("This run logged no train.loss / val.loss history.")
        else:
            st.altair_chart(charts.history_chart(hist), width="stretch")
    with right:
        groups, why = data.effective_groups(run)
        if groups is None:
            st.info(md(why))
        else:
            st.caption("Effective per-group settings (`trainer explain`)")
            st.dataframe(pl.DataFrame(groups), hide_index=True, height=300)


def lookup_run(prep: pl.DataFrame, run_id: str | None) -> dict[str, Any] | None:
    """The classified row of a run id (from the URL or a chart selection), or None."""
    if not run_id or "run_id" not in prep.columns:
        return None
    hit = prep.filter(pl.col("run_id") == run_id)
    return hit.row(0, named=True) if hit.height else None


def selected_run_id(event: Any, param: str = charts.PICK) -> str | None:
    """The run id a chart point selection holds (st.altair_chart(on_select="rerun") state), else None."""
    try:
        points = event.selection.get(param) or []
    except AttributeError:
        return None
    for p in points:
        if isinstance(p, dict) and p.get("run_id"):
            return str(p["run_id"])
    return None


def chart(ch: alt.TopLevelMixin | dict[str, Any], key: str | None = None,
          picks: Sequence[str] = (charts.PICK,)) -> Any:
    """Draw an Altair chart or a cached Vega-Lite spec (charts.vega_spec: no re-validation or pandas round trip
    per rerun); with a key, point selections (named ``picks``) rerun the page and the event is returned."""
    draw = st.vega_lite_chart if isinstance(ch, dict) else st.altair_chart
    if key is None:
        return draw(ch, width="stretch")
    return draw(ch, width="stretch", key=key, on_select="rerun", selection_mode=list(picks))
