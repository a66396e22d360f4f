"""Every dashboard page under streamlit.testing.v1.AppTest on the fixture stores: no exception, the key elements
present, widget changes (and URL query parameters) change the result, bad data gives a message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis.recommend import validate_recommendation
from tests.app.conftest import EVIL_NAME, Stores

APP = Path(__file__).resolve().parents[2] / "app" / "Home.py"
PAGES = ("home", "sweeps", "transfer", "compare", "runs", "coord_check", "export")


def open_page(monkeypatch: pytest.MonkeyPatch, uri: str, page: str, **query: str | list[str]) -> AppTest:
    """Run the app on ``uri``, switch to ``page`` with the given URL query, and check nothing raised."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def unescape(text: str) -> str:
    return text.replace("\\", "")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(stores: Stores, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    at = open_page(monkeypatch, stores.main, page)
    assert at.title, "each page has a title"
    assert not texts(at, "error") or page == "transfer"  # transfer shows a 'fails' verdict as st.error


def test_sweeps_lists_every_experiment_and_filters(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "sweeps")
    table = at.dataframe[0].value
    assert {"mup-demo", "coord", "one-run", "all-diverged", "empty"} <= set(table["experiment"])
    demo = table[table["experiment"] == "mup-demo"].iloc[0]
    assert demo["ok"] + demo["diverged"] + demo["other"] == 240
    assert demo["source"] == "import:mup_demo_mlp" and demo["params"] == "mup, sp"
    assert demo["axes"].startswith("width 256–8192")
    at.text_input(key="q").set_value("demo").run()
    assert list(at.dataframe[0].value["experiment"]) == ["mup-demo"]
    assert at.query_params["q"] == "demo"


def test_transfer_verdicts_and_widgets(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "transfer", exp="mup-demo", param="mup")
    assert at.selectbox(key="param").value == "mup"
    assert any(unescape(t).startswith("inconclusive: drift +0.168") for t in texts(at, "warning"))
    assert len(at.get("vega_lite_chart")) == 2  # transfer plot and optimum-vs-scale plot
    table = [str(m.value) for m in at.markdown if str(m.value).startswith("| width |")]
    assert len(table) == 1 and len(table[0].splitlines()) == 2 + 6  # header, alignment, one row per width
    assert "| 8192 |" in table[0] and "| quadratic |" in table[0]
    at.selectbox(key="param").set_value("sp").run()
    assert not at.exception
    verdict = unescape(texts(at, "error")[0])
    assert verdict.startswith("fails: drift -0.700") and "diverges at a larger scale" in verdict
    assert any("grid edge (low) at width 8192" in unescape(t) for t in texts(at, "warning"))
    assert at.query_params["param"] == "sp"


def test_markdown_tables_escape_every_cell() -> None:
    import polars as pl

    from app.common import table_md

    df = pl.DataFrame({"name": [EVIL_NAME, "a|b"], "lr": [0.001234567, None], "ok": [True, False]})
    lines = table_md(df).splitlines()
    assert lines[:2] == ["| name | lr | ok |", "|:---|---:|:---|"]
    assert lines[2].endswith("| 0.001235 | ✓ |") and "\\<img" in lines[2] and "\\[click\\]" in lines[2]
    assert lines[3] == "| a\\|b |  |  |"  # a pipe cannot split a cell


def test_transfer_url_state_and_unknown_experiment(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "transfer", exp="no-such-experiment")
    assert any("no-such-experiment" in unescape(t) and "not available" in unescape(t) for t in texts(at, "warning"))
    at = open_page(monkeypatch, stores.main, "transfer", exp="mup-demo", param="sp", tau="0.01")
    assert at.selectbox(key="tau").value == pytest.approx(0.01)
    assert "margin ±0.019" in unescape(texts(at, "error")[0])  # a larger τ widens the equivalence margin
    assert at.selectbox(key="tau").options[:3] == ["0.1 %", "0.2 %", "0.5 %"]
    at.selectbox(key="tau").set_value(0.05).run()
    assert at.query_params["tau"] == "0.05" and "margin ±0.042" in unescape(texts(at, "error")[0])
    at = open_page(monkeypatch, stores.main, "transfer", exp="mup-demo", param="sp", tau="0.003")
    assert at.selectbox(key="tau").value == pytest.approx(0.003)  # a shared link keeps a τ the list lacks
    assert "0.3 %" in at.selectbox(key="tau").options
    at = open_page(monkeypatch, stores.main, "transfer", exp="mup-demo", param="sp", tau="-1")
    assert at.selectbox(key="tau").value == pytest.approx(0.005)  # not a usable τ: the default


def test_compare_table(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "compare", exp="mup-demo")
    table = at.dataframe[0].value
    assert list(table["param"]) == ["mup", "sp"]
    assert list(table["verdict"]) == ["inconclusive", "fails"]
    assert table["slope"].iloc[1] == pytest.approx(-0.70, abs=0.01)
    assert table["R(∞) vs μP"].iloc[0] == "reference"
    assert "best loss at largest width" in table.columns and table["largest width"].iloc[0] == 8192
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert '"pick0"' in spec and '"pick1"' in spec  # every panel is clickable, each with its own selection


def test_compare_shows_the_selected_run(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis.load import load_runs

    run_id = load_runs(stores.main, "mup-demo")["run_id"][0]
    at = open_page(monkeypatch, stores.main, "compare", exp="mup-demo", run=run_id)
    assert any(str(h.value).startswith("Run ") for h in at.subheader)


def test_runs_filter_and_run_detail(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "runs", exp="mup-demo")
    assert len(at.dataframe[0].value) == 240
    at.multiselect(key="status").set_value(["diverged"]).run()
    shown = at.dataframe[0].value
    assert 0 < len(shown) < 240 and set(shown["status"]) == {"diverged"}
    run_id = shown["run_id"].iloc[0]
    at = open_page(monkeypatch, stores.main, "runs", exp="mup-demo", run=run_id)
    assert any(run_id in str(df.value.to_dict()) for df in at.dataframe[1:])
    assert len(at.get("vega_lite_chart")) == 1  # the training curve, fetched on demand
    assert any("per-group settings exist only for runs made by our trainer" in unescape(t) for t in texts(at, "info"))


def test_run_names_are_never_markup(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "runs", exp="one-run")
    run_id = at.dataframe[0].value["run_id"].iloc[0]
    at = open_page(monkeypatch, stores.main, "runs", exp="one-run", run=run_id)
    heading = [h.value for h in at.subheader if "img" in h.value][0]
    assert "\\<img" in heading and "\\[click\\]" in heading  # escaped, so it renders as text
    assert unescape(heading) == "Run " + EVIL_NAME
    for md in at.markdown:
        assert not md.proto.allow_html


def test_trainer_runs_show_effective_settings(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.trainer, "runs", exp="mini")
    table = at.dataframe[0].value
    assert len(table) == 12 and {"sp", "mup"} == set(table["param.name"])
    at = open_page(monkeypatch, stores.trainer, "runs", exp="mini", run=table["run_id"].iloc[0])
    groups = at.dataframe[-1].value
    assert {"module", "lr", "init_std"} <= set(groups.columns)
    for page in ("transfer", "compare", "export", "sweeps"):
        open_page(monkeypatch, stores.trainer, page, exp="mini")


def test_coord_check_widgets(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "coord_check")
    assert at.selectbox(key="exp").value == "coord"
    assert len(at.get("vega_lite_chart")) == 1
    before = at.dataframe[0].value
    assert {"module", "sp", "mup"} <= set(before.columns)
    at.selectbox(key="quantity").set_value("act").run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)
    at.multiselect(key="module").set_value(["logits"]).run()
    assert list(at.dataframe[0].value["module"]) == ["logits"]


def test_export_json_validates_and_follows_target(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, stores.main, "export", exp="mup-demo", param="mup")
    assert at.get("download_button")
    doc = json.loads(at.code[0].value)
    validate_recommendation(doc)
    assert doc["param_scheme"] == "mup" and doc["target"] == {"width": 8192}
    assert doc["source"]["experiment"] == ["mup-demo"]
    at.number_input(key="target_width").set_value(32768).run()
    assert not at.exception
    doc2 = json.loads(at.code[0].value)
    validate_recommendation(doc2)
    assert doc2["target"] == {"width": 32768} and at.query_params["target_width"] == "32768"


@pytest.mark.parametrize("exp", ["one-run", "all-diverged", "no-metric", "empty"])
@pytest.mark.parametrize("page", ["transfer", "compare", "runs", "export"])
def test_bad_experiments_give_messages(stores: Stores, monkeypatch: pytest.MonkeyPatch, exp: str, page: str) -> None:
    at = open_page(monkeypatch, stores.main, page, exp=exp)
    messages = texts(at, "info") + texts(at, "warning")
    if page == "runs" and exp in ("one-run", "all-diverged", "no-metric"):
        assert at.dataframe, "the runs table still lists them"
    else:
        assert messages, f"{page} on {exp}: expected a message"


def test_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    for page in PAGES:
        at = open_page(monkeypatch, uri, page)
        assert texts(at, "info") or texts(at, "warning"), page
