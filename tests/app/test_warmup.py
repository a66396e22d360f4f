"""The dashboard's warm-up (app/warmup.py) and launcher (app/launch.py): after ``warm``, the Overview and the
Transfer page's default view are drawn without loading, classifying, fitting or building a chart again (each of
those raises here, and a control run shows that the page would otherwise call them); a broken store stops the
warm-up with a line naming it, never with a crash; the launcher passes Streamlit's options through."""

from __future__ import annotations

import pytest
import streamlit as st

from app import data, launch, warmup
from app import transfer_view as tv
from tests.app.test_pages import open_page, texts

RECOMPUTING = ("load_runs", "prepare_runs", "optimum_table", "axis_transfer")


class Recomputed(RuntimeError):
    """What a forbidden analysis step raises in these tests."""


def forbid_recomputing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every analysis step behind the pages, and the chart build, raise from now on."""
    def fail(*_args: object, **_kwargs: object) -> None:
        raise Recomputed("recomputed although the warm-up should have cached it")

    for name in RECOMPUTING:
        monkeypatch.setattr(data, name, fail)
    monkeypatch.setattr(tv, "build", fail)


def test_warm_caches_the_first_pages(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    st.cache_resource.clear()
    with monkeypatch.context() as m:  # control: cold caches, so the default view must compute and fails here
        forbid_recomputing(m)
        at = open_page(m, seeded, "transfer")
        assert any("Recomputed" in t for t in texts(at, "warning")), texts(at, "warning")

    st.cache_resource.clear()
    warmup.import_modules()
    times = warmup.warm(seeded)
    assert list(times) == ["sweep summary", "experiment 'bench-transfer'", "charts"]
    forbid_recomputing(monkeypatch)
    at = open_page(monkeypatch, seeded, "transfer")
    assert not texts(at, "warning"), texts(at, "warning")
    assert len(at.get("vega_lite_chart")) == 2
    assert at.selectbox(key="exp").value == "bench-transfer"
    at = open_page(monkeypatch, seeded, "home")
    assert [m.value for m in at.metric][1] == "2000"  # runs: from the warm sweep summary


def test_warm_up_of_a_broken_store_says_so(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not an sqlite database" * 100)
    warmup.warm_quietly(f"sqlite:///{db}", 0.5)
    err = capsys.readouterr().err
    assert f"warm-up of sqlite:///{db} stopped" in err and "not a database" in err

    warmup.warm_quietly(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")  # no store yet: nothing to warm
    assert "warm-up of" in capsys.readouterr().err


def test_launcher_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////env.db")
    assert launch.parse(["--server.port", "8600", "--no-warm-up"]) == ("sqlite:////env.db", False,
                                                                        ["--server.port", "8600"])
    uri, warm, rest = launch.parse(["--tracking-uri", "sqlite:////flag.db", "--server.headless", "true"])
    assert (uri, warm, rest) == ("sqlite:////flag.db", True, ["--server.headless", "true"])
    assert launch.parse(["--server.port", "1", "--", "--tracking-uri", "sqlite:////x.db"]) == (
        "sqlite:////x.db", True, ["--server.port", "1"])  # streamlit run's form
    with pytest.raises(SystemExit):  # only the launcher's own flags after --
        launch.parse(["--", "--server.port", "1"])
