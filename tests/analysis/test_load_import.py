"""Loader (SQLite bulk read, cache, API path, histories) and the importer round trip through MLflow."""

from __future__ import annotations

import math

import polars as pl
import pytest

from analysis.importers import MappingError, import_long_table, write_to_mlflow
from analysis.load import _latest_via_api, _load_via_api, clear_cache, latest_experiment, load_history, load_runs
from tests.analysis.conftest import MUP_CSV, MUP_MAPPING
from trainer import schema as S


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small MLflow store: 3 runs (one NaN, one inf metric), one deleted run, a second experiment."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("sweep")
    other = client.create_experiment("other")
    ids = []
    for i, final in enumerate([3.0, math.nan, math.inf]):
        run = client.create_run(exp, run_name=f"r{i}")
        rid = run.info.run_id
        client.log_param(rid, "model.width", 64 * (i + 1))
        client.log_param(rid, "hp.lr", 1e-3 * (i + 1))
        client.log_param(rid, S.P_PARAMETERIZATION, "mup")
        client.set_tag(rid, S.T_STATUS, "ok")
        client.log_metric(rid, S.S_FINAL_VAL_LOSS, final)
        for step, v in enumerate([5.0, 4.0, final]):
            client.log_metric(rid, S.M_TRAIN_LOSS, v, step=step)
        client.set_terminated(rid)
        ids.append(rid)
    gone = client.create_run(exp)
    client.delete_run(gone.info.run_id)
    client.create_run(other)
    return uri, ids, client, exp


def test_sqlite_bulk_read(store):
    uri, ids, _, _ = store
    df = load_runs(uri, "sweep", use_cache=False)
    assert df.height == 3 and set(df["run_id"]) == set(ids)  # deleted run and other experiment excluded
    assert df["model.width"].dtype == pl.Float64 and df[S.P_PARAMETERIZATION].dtype == pl.Utf8
    vals = dict(zip(df["run_id"], df[S.S_FINAL_VAL_LOSS], strict=True))
    assert vals[ids[0]] == 3.0 and math.isnan(vals[ids[1]]) and vals[ids[2]] == math.inf
    assert load_runs(uri, use_cache=False).height == 4  # all experiments


def test_cache_hit_and_invalidation(store):
    uri, _, client, exp = store
    clear_cache()
    a = load_runs(uri, "sweep")
    assert load_runs(uri, "sweep") is a
    run = client.create_run(exp)
    client.log_param(run.info.run_id, "hp.lr", 0.5)
    b = load_runs(uri, "sweep")
    assert b is not a and b.height == a.height + 1
    client.delete_run(run.info.run_id)
    assert load_runs(uri, "sweep").height == a.height


def test_api_path_matches_sqlite(store):
    uri, _, _, _ = store
    fast = load_runs(uri, "sweep", use_cache=False).sort("run_id")
    api = _load_via_api(uri, ["sweep"]).sort("run_id")
    for col in ("model.width", "hp.lr", S.P_PARAMETERIZATION, S.T_STATUS):
        assert fast[col].to_list() == api[col].to_list(), col
    # the API path restores inf; NaN comes back as null there (search_runs drops it), as documented
    assert [str(v).replace("nan", "None") for v in fast[S.S_FINAL_VAL_LOSS]] == [
        str(v).replace("nan", "None") for v in api[S.S_FINAL_VAL_LOSS]]
    assert set(fast.columns) - set(api.columns) <= {"mlflow.runName", "mlflow.user", "mlflow.source.name",
                                                    "mlflow.source.type"}


def test_unknown_and_empty_experiments(store):
    uri, _, _, _ = store
    with pytest.raises(LookupError, match="unknown experiment"):
        load_runs(uri, "nope")
    empty = load_runs(uri, "Default", use_cache=False)
    assert empty.is_empty() and "run_id" in empty.columns
    with pytest.raises(FileNotFoundError):
        load_runs("sqlite:////nonexistent/dir/mlflow.db")


def test_latest_experiment_is_one_query_and_agrees_with_the_run_table(tmp_path):
    """The experiment of the run that started last, skipping coordinate checks, deleted runs and deleted
    experiments; the SQLite query, the MLflow-API path and the full run table agree."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    assert latest_experiment(uri) is None and _latest_via_api(uri) is None  # no runs at all
    ids = {name: client.create_experiment(name) for name in ("old", "new", "coord", "gone", "dropped")}
    for name, start, tags in (("old", 1000, {S.T_RUN_KIND: S.RUN_KIND_TRAIN}), ("new", 2000, {}),
                              ("coord", 3000, {S.T_RUN_KIND: S.RUN_KIND_COORD}),
                              ("gone", 4000, {}), ("dropped", 5000, {})):
        run = client.create_run(ids[name], start_time=start, tags=tags)
        if name == "gone":
            client.delete_run(run.info.run_id)
    client.delete_experiment(ids["dropped"])
    assert latest_experiment(uri) == _latest_via_api(uri) == "new"
    runs = load_runs(uri, use_cache=False)
    runs = runs.filter(pl.col(S.T_RUN_KIND).fill_null("") != S.RUN_KIND_COORD)
    assert runs.sort("start_time", descending=True)["experiment"][0] == "new"  # what the dashboard did before
    client.create_run(ids["old"], start_time=6000)
    assert latest_experiment(uri) == _latest_via_api(uri) == "old"


def test_history_on_demand(store):
    uri, ids, _, _ = store
    h = load_history(ids[:2], [S.M_TRAIN_LOSS], uri)
    assert h.height == 6
    last = h.filter((pl.col("run_id") == ids[1]) & (pl.col("step") == 2))["value"][0]
    assert math.isnan(last)


def test_import_round_trip_through_mlflow(tmp_path, mup_sweep):
    data = pl.read_csv(MUP_CSV).filter(pl.col("width").is_in([256, 4096]) & (pl.col("param") == "SP"))
    sub = import_long_table(data, MUP_MAPPING)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_to_mlflow(sub, uri, "mup")
    back = load_runs(uri, "mup", use_cache=False)
    assert back.height == sub.runs.height == 40
    key = ["run_name"]
    for col in (S.P_LR, "model.width", S.S_FINAL_TRAIN_LOSS, S.S_INITIAL_LOSS, S.T_STATUS):
        a = sub.runs.sort(key)[col].to_list()
        b = back.sort(key)[col].to_list()
        assert [str(x) for x in a] == [str(x) for x in b], col
    with pytest.raises(MappingError, match="already has"):
        write_to_mlflow(sub, uri, "mup")
    hist = load_history(back["run_id"].to_list()[:3], [S.M_TRAIN_LOSS], uri)
    assert hist.height > 3


def test_mapping_errors_name_the_problem(tmp_path):
    data = pl.read_csv(MUP_CSV).head(40)
    with pytest.raises(MappingError, match="not in the data"):
        import_long_table(data, {"name": "x", "run": "nope", "step": "epoch", "metrics": {"train.loss": "train_loss"}})
    with pytest.raises(MappingError, match="not history metrics"):
        import_long_table(data, {"name": "x", "run": "run_index", "step": "epoch", "metrics": {"loss": "train_loss"}})
    with pytest.raises(MappingError, match="more than one value"):
        import_long_table(pl.read_csv(MUP_CSV), {"name": "x", "run": "run_index", "step": "epoch",
                                                 "params": {"param.name": "param"},
                                                 "metrics": {"train.loss": "train_loss"}})
    bad = data.with_columns(pl.col("train_loss").cast(pl.Utf8).fill_null("NaN")).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("oops")).otherwise(pl.col("train_loss")).alias("train_loss"))
    with pytest.raises(MappingError, match="non-numbers"):
        import_long_table(bad, MUP_MAPPING)
    with pytest.raises(MappingError, match="file not found"):
        import_long_table(tmp_path / "none.csv", MUP_MAPPING)
    data.write_parquet(tmp_path / "d.parquet")
    assert import_long_table(tmp_path / "d.parquet", MUP_MAPPING).runs.height == 2
