"""The Transfer page's chart data and caches on a store with several seeds per grid point: one dot per point keeps
every point and draws only real runs (the median seed), tooltips carry the run's values, a chart selection (what a
click on a dot sends) shows that run, panels are built once per store state, and a new run in the store is seen."""

from __future__ import annotations

import json
import sqlite3

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from analysis.classify import default_objective, prepare_runs
from analysis.load import load_runs, sqlite_path
from analysis.optimum import optimum_table
from analysis.transfer import AxisTransfer, axis_transfer
from app import charts, data
from app import transfer_view as tv
from tests.app.conftest import SEEDED_EXPERIMENT, Stores
from tests.app.test_pages import open_page

CELL = ["scale", "hp"]
Group = tuple[AxisTransfer, pl.DataFrame, pl.DataFrame]


@pytest.fixture(scope="module")
def group(seeded: str) -> Group:
    """The μP depth-2 group along width of the seeded store: 5 widths × 25 LRs × 2 seeds, the top LRs diverged."""
    raw = load_runs(seeded, SEEDED_EXPERIMENT)
    prep = prepare_runs(raw, default_objective(raw))
    opt = optimum_table(prep, "hp.lr")
    result = next(r for r in axis_transfer(opt, "width") if r.group["param.name"] == "mup"
                  and r.group["scale.depth"] == 2)
    return result, opt, prep


def chart_rows(chart) -> dict[str, int]:  # noqa: ANN001 - an AppTest element
    """Rows of each dataset a drawn chart sent to the browser (Arrow IPC streams)."""
    return {d.name: pa.ipc.open_stream(d.data.data).read_all().num_rows for d in chart.proto.datasets}


def test_one_dot_per_point_is_a_real_run_and_keeps_every_point(group: Group) -> None:
    result, opt, prep = group
    every = tv.build(result, opt, prep, every_run=True)
    one = tv.build(result, opt, prep, every_run=False)
    runs = every.points
    assert runs.height == int(data.group_rows(opt, result.group, "width")["n_runs"].sum())  # every ok run
    assert tv.replicated(every.rows) == 2

    # every (width, lr) point that has ok runs is drawn, once
    points = runs.select(CELL).unique().sort(CELL)
    assert one.points.select(CELL).sort(CELL).equals(points) and one.points.height < runs.height
    assert points.height == 5 * 21  # 25 LRs, the top 4 diverged at every width

    # each dot is one of the point's runs with its own values: the lower median of the seeds' losses
    mine = one.points.join(runs, on="run_id", suffix="_run")
    assert mine.height == one.points.height
    for col in ("scale", "hp", "loss", "run_name", "seed"):
        assert (mine[col] == mine[f"{col}_run"]).all(), col
    assert set(runs["seed"]) == {"0", "1"}  # the seed as the integer it is (the param table holds 0.0 and 1.0)
    ranked = runs.with_columns(pl.col("loss").rank("ordinal").over(CELL).alias("rank"),
                               pl.len().over(CELL).alias("n")).join(one.points.select("run_id"), on="run_id")
    assert (ranked["rank"] == (ranked["n"] + 1) // 2).all()

    # the band (analysis.optimum.loss_band) still spans every run of a point, whichever dots are drawn; its hp is the
    # grid value of the mean curve (ln hp rounded to 1e-6), so it matches the runs' hp to that precision
    band = runs.group_by(CELL).agg(pl.col("loss").min().alias("lo"), pl.col("loss").max().alias("hi")).sort(CELL)
    assert_frame_equal(one.band, band, check_exact=False, rel_tol=1e-6)
    assert_frame_equal(every.band, band, check_exact=False, rel_tol=1e-6)
    assert one.band.select("scale", "hp").equals(one.curves.select("scale", "hp").sort(CELL))

    # diverged runs: one triangle per point, each a real diverged run, no point left out
    div = data.group_runs(prep, result.group, "width").filter(pl.col("status") == "diverged")
    assert one.diverged.height == div.select("scale.width", "hp.lr").unique().height == 5 * 4
    assert set(one.diverged["run_id"]) <= set(div["run_id"])


def test_chart_spec_carries_run_values_and_the_click_selection(group: Group) -> None:
    result, opt, prep = group
    panel = tv.transfer_panel(result, opt, prep, every_run=False)
    spec = panel.transfer_spec
    dots = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "circle")
    tips = {t["field"]: t.get("title", t["field"]) for t in dots["encoding"]["tooltip"]}
    assert {"run_name", "run_id", "seed", "loss", "hp", "scale"} <= set(tips) and tips["hp"] == "hp.lr"
    frame = spec["datasets"][dots["data"]["name"]]
    assert_frame_equal(frame, panel.view.points, check_row_order=False, check_dtypes=False)
    pick = next(p for p in spec["params"] if p["name"] == charts.PICK)
    assert pick["select"] == {"type": "point", "fields": ["run_id"], "on": "click"} and pick["views"] == [dots["name"]]
    assert "config" not in spec  # Altair's default theme is left out, as st.altair_chart leaves it out


def test_panels_are_built_once_per_set_of_analysis_objects(group: Group) -> None:
    result, opt, prep = group
    panel = tv.transfer_panel(result, opt, prep, every_run=False)
    assert tv.transfer_panel(result, opt, prep, every_run=False) is panel
    assert tv.transfer_panel(result, opt, prep, every_run=True) is not panel
    assert tv.transfer_panel(result, opt.clone(), prep, every_run=False) is not panel  # other objects: rebuilt


def test_transfer_page_draws_one_dot_per_point_until_asked(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, seeded, "transfer", exp=SEEDED_EXPERIMENT, param="mup", axis="width",
                   every_run="0")
    assert at.checkbox(key="every_run").value is False
    assert any("one dot per point: its median-loss run of up to 2" in c.value for c in at.caption)
    one = chart_rows(at.get("vega_lite_chart")[0])
    at.checkbox(key="every_run").check().run()
    assert not at.exception and at.query_params["every_run"] == "1"
    every = chart_rows(at.get("vega_lite_chart")[0])
    assert sorted(one.values()) != sorted(every.values())
    assert max(every.values()) == 2 * max(one.values())  # the dots: 2 seeds at every point


def test_clicking_a_dot_shows_that_run(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "transfer", exp="mup-demo", param="mup")
    assert not any(str(h.value).startswith("Run ") for h in at.subheader)
    chart = at.get("vega_lite_chart")[0]
    run_id = load_runs(stores.main, "mup-demo").filter(pl.col("param.name") == "mup")["run_id"][0]
    # AppTest has no chart-selection API: send the widget state the browser sends when a dot is clicked
    states = at._tree.get_widget_states()
    click = states.widgets.add()
    click.id = chart.proto.id
    click.string_value = json.dumps({"selection": {charts.PICK: [{"run_id": run_id}]}})
    at._run(states)
    assert not at.exception, [e.value for e in at.exception]
    assert any(str(h.value).startswith("Run ") for h in at.subheader)
    assert at.query_params["run"] == run_id


def test_experiment_in_the_url_skips_the_default_lookup(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(data, "default_experiment", lambda uri: calls.append(uri) or "mup-demo")
    open_page(monkeypatch, stores.main, "transfer", exp="mup-demo")
    assert calls == []  # the default (a load of every run in the store) is not needed
    at = open_page(monkeypatch, stores.main, "transfer")
    assert calls and at.selectbox(key="exp").value == "mup-demo"


def test_default_experiment_is_the_latest_training_run(stores: Stores) -> None:
    raw = data.runs(stores.main, None)  # what the page loaded for this before: every run of the store
    latest = raw.filter(~data.is_coord(raw)).sort("start_time", descending=True)["experiment"][0]
    assert data.default_experiment(stores.main) == latest
    assert data.default_experiment("sqlite:////nonexistent/mlflow.db") is None


def test_fixed_settings_sort_by_value(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for page, query in (("compare", {}), ("transfer", {"param": "mup"})):
        at = open_page(monkeypatch, seeded, page, exp=SEEDED_EXPERIMENT, axis="width", **query)
        box = at.selectbox(key="group")
        assert box.options == ["depth=2", "depth=4", "depth=8", "depth=16"] and box.value == "depth=2", page
    groups = [{"d": 16.0}, {"d": None}, {"d": "x"}, {"d": 2.0}]
    assert sorted(groups, key=lambda g: data.group_order(g, ["d"])) == [{"d": 2.0}, {"d": 16.0}, {"d": "x"},
                                                                         {"d": None}]


def test_seeds_and_other_whole_numbers_read_as_integers() -> None:
    df = pl.DataFrame({"f": [3.0, 2.5, None, -0.0], "s": ["a", None, "3.0", "b"]})
    assert df.select(data.as_text(df, "f"))["f"].to_list() == ["3", "2.5", None, "0"]
    assert df.select(data.as_text(df, "s"))["s"].to_list() == ["a", None, "3.0", "b"]  # text stays as written
    assert df.select(data.as_text(df, "absent").alias("x"))["x"].to_list() == [""]


def test_store_shown_as_text_not_code(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "transfer", exp="mup-demo")
    assert not at.code  # a code block loads Streamlit's syntax highlighter, ~0.5 s of browser time per page open
    assert stores.main in [t.value for t in at.sidebar.text]


def test_a_new_run_in_the_store_is_seen(stores: Stores, tmp_path) -> None:  # noqa: ANN001
    from mlflow.tracking import MlflowClient

    db = tmp_path / "copy.db"
    with sqlite3.connect(sqlite_path(stores.main)) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    uri = f"sqlite:///{db}"
    before = data.runs(uri, "one-run").height
    client = MlflowClient(uri)
    run = client.create_run(client.get_experiment_by_name("one-run").experiment_id, run_name="late")
    client.set_terminated(run.info.run_id)
    assert data.runs(uri, "one-run").height == before + 1  # cached per store signature, not per URI only
