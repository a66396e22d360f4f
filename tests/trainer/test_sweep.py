"""Sweeps: spec expansion and validation, resume semantics, failure handling and executors."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainer import executors, schema, sweep, tracking
from trainer.cli import main
from trainer.config import ConfigError, RunConfig, config_hash
from trainer.executors import (
    DEFAULT_GROUP_SIZE,
    GpuPoolExecutor,
    SequentialExecutor,
    TaskResult,
    WorkerPoolExecutor,
    make_executor,
    visible_gpus,
)

# Trains in well under a second per run on 2 CPU cores (after the first run loads the corpus).
TINY_BASE: dict[str, Any] = {
    "model": {"width": 32, "depth": 1, "head_dim": 16, "seq_len": 32},
    "param": {"name": "mup", "base_width": 32, "base_depth": 1},
    "train": {"batch_size": 4, "steps": 12, "eval_every": 6, "eval_batches": 2, "log_every": 3, "device": "cpu"},
}




def write_spec(directory: Path, **spec: Any) -> Path:
    raw = {"name": "tiny", "experiment": "tests", "base": TINY_BASE, **spec}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---- expansion and validation (no training) -------------------------------------------------------------------
def test_expansion_order_log_grid_and_labels(tmp_path: Path) -> None:
    plan = sweep.load_sweep(write_spec(
        tmp_path,
        axes={"model.width": [32, 64]},
        hparams={"hp.lr": {"log2_min": -10, "log2_max": -6, "num": 5}, "mult.lr.token_emb": [0.5, 1, 2]},
        parameterizations=["sp", "mup"],
        seeds=[0, 1],
    ))
    assert len(plan.points) == 2 * 2 * 5 * 3 * 2
    assert [d.key for d in plan.dims] == ["param.name", "model.width", "hp.lr", "mult.lr.token_emb", "train.seed"]
    assert plan.dims[2].values == (2.0**-10, 2.0**-9, 2.0**-8, 2.0**-7, 2.0**-6)
    first, second = plan.points[:2]
    assert first.overrides == {"param.name": "sp", "model.width": 32, "hp.lr": 2.0**-10, "mult.lr.token_emb": 0.5,
                               "train.seed": 0}
    assert second.overrides["train.seed"] == 1  # the last dimension varies fastest
    assert first.label == "param=sp width=32 lr=2^-10 lr.token_emb=0.5 seed=0"
    assert first.config.hp.lr == 2.0**-10 and first.config.mult["lr"]["token_emb"] == 0.5
    assert len({p.config_hash for p in plan.points}) == len(plan.points)
    assert [p.index for p in plan.points] == list(range(len(plan.points)))


def test_fractional_log_grid() -> None:
    dim = sweep._dimension("hp.lr", {"log2_min": -2, "log2_max": -1, "num": 3}, Path("s.yaml"), "hparams.hp.lr")
    assert dim.values == pytest.approx((0.25, 2**-1.5, 0.5))
    assert [dim.show(v) for v in dim.values] == ["2^-2", "2^-1.5", "2^-1"]


def test_sweep_id_is_stable_for_the_same_expansion_and_changes_with_the_grid(tmp_path: Path) -> None:
    a = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02], "mult.lr.unemb": [1, 2]}))
    (tmp_path / "b").mkdir()
    b = sweep.load_sweep(write_spec(tmp_path / "b", hparams={"mult.lr.unemb": [1.0, 2.0], "hp.lr": [0.01, 0.02]}))
    (tmp_path / "c").mkdir()
    c = sweep.load_sweep(write_spec(tmp_path / "c", hparams={"hp.lr": [0.01, 0.04], "mult.lr.unemb": [1, 2]}))
    assert a.sweep_id == b.sweep_id != c.sweep_id
    assert a.sweep_id.startswith("tiny-")


def test_duplicate_points_are_collapsed(tmp_path: Path) -> None:
    plan = sweep.load_sweep(write_spec(tmp_path, hparams={"mult.lr.unemb": [1, 1.0, 2]}))
    assert len(plan.points) == 2 and plan.n_duplicates == 1


def test_base_file_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_BASE))
    plan = sweep.load_sweep(write_spec(tmp_path, base="base.yaml", seeds=[3]))
    assert plan.points[0].config.model.width == 32 and plan.points[0].config.train.seed == 3
    assert plan.points[0].label == "base"  # nothing varies


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"hparams": {"hp.lrr": [0.01]}}, "hp.lrr"),  # a typo of a config field
        ({"axes": {"model.widht": [32]}}, "model.widht"),
        ({"hparams": {"hp.lr": [0.01, -1.0]}}, "hp.lr"),  # one bad value among good ones
        ({"axes": {"model.width": [32, 50]}}, "model.width"),  # 50 is not a multiple of head_dim 16
        ({"parameterizations": ["sp", "mupp"]}, "param.name"),
        ({"hparams": {"hp.lr": {"log2_min": -10, "log2_max": -6}}}, "hparams.hp.lr"),  # num missing
        ({"hparams": {"hp.lr": {"log2_min": -6, "log2_max": -10, "num": 3}}}, "hparams.hp.lr"),
        ({"hparams": {"hp.lr": []}}, "hparams.hp.lr"),
        ({"seeds": [0], "hparams": {"train.seed": [1]}}, "train.seed"),  # swept twice
        ({"hparam": {"hp.lr": [0.01]}}, "hparam"),  # unknown spec key
        ({"name": "has space"}, "name"),
        ({"base": {"model": {"widht": 32}}}, "base.model.widht"),
    ],
)
def test_bad_spec_is_refused_naming_the_spec_and_field(tmp_path: Path, spec: dict[str, Any], field: str) -> None:
    path = write_spec(tmp_path, **spec)
    with pytest.raises(ConfigError) as info:
        sweep.load_sweep(path)
    assert info.value.field == f"{path}: {field}"


def test_typo_is_refused_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, hparams={"hp.lrr": [0.01, 0.02]})
    db = tmp_path / "store" / "mlflow.db"
    assert main(["sweep", str(path), "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert "hp.lrr" in err and str(path) in err
    assert not db.exists()


@pytest.mark.skipif(bool(visible_gpus()), reason="this machine has a GPU")
def test_gpu_pool_is_refused_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store" / "mlflow.db"
    args = ["sweep", str(write_spec(tmp_path)), "--executor", "gpu-pool", "--tracking-uri", f"sqlite:///{db}"]
    assert main(args) == 2
    assert "needs at least one CUDA GPU" in capsys.readouterr().err
    assert not db.exists()


def test_gpu_pool_gives_each_worker_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["2", "5"])
    pool = GpuPoolExecutor()
    assert pool.worker_envs == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    assert pool.device == "cuda"


def test_make_executor_passes_batch_to_sequential_and_gpu_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0"])
    for name in ("sequential", "gpu-pool"):
        assert make_executor(name, 4).group_size == 4
        assert make_executor(name).group_size == DEFAULT_GROUP_SIZE  # --batch not given


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "store" / "mlflow.db"
    path = write_spec(tmp_path, hparams={"hp.lr": {"log2_min": -8, "log2_max": -6, "num": 3}})
    assert main(["sweep", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{db}"]) == 0
    out = capsys.readouterr().out
    assert "3 configs, 0 already finished (skipped), 3 to run" in out
    assert "lr=2^-7" in out
    assert not db.exists()


# ---- running sweeps (tiny training runs) ------------------------------------------------------------------------
def _children(store_uri: str, experiment: str) -> list[Any]:
    client = tracking.client_for(store_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = tracking.search_all_runs(client, experiment_id)
    return [r for r in runs if r.data.tags.get(schema.T_RUN_KIND) != schema.RUN_KIND_SWEEP]


def _parent(store_uri: str, experiment: str) -> Any:
    client = tracking.client_for(store_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = tracking.search_all_runs(client, experiment_id, f"tags.`{schema.T_RUN_KIND}` = 'sweep'")
    return parent


def _failing_for(lr: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make training raise for one learning rate, as a crashing config would."""
    import trainer.train

    real = trainer.train.train_run

    def train_run(cfg: RunConfig, logger: Any, extra_tags: dict[str, str] | None = None) -> Any:
        if cfg.hp.lr == lr:
            raise RuntimeError("simulated crash")
        return real(cfg, logger, extra_tags)

    monkeypatch.setattr(trainer.train, "train_run", train_run)


@pytest.mark.slow
def test_sweep_logs_resumes_retires_stale_runs_and_survives_failures(
        tmp_path: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = sweep.load_sweep(write_spec(tmp_path, axes={"model.width": [32, 64]}, hparams={"hp.lr": [0.01, 0.02]}))
    lines: list[str] = []
    client = tracking.client_for(store_uri)

    # 1. stop after two runs, as an interrupted session would
    first = sweep.run_sweep(plan, store_uri, SequentialExecutor(), max_runs=2, say=lines.append)
    assert first.counts == {schema.STATUS_OK: 2} and first.left == 2
    assert lines[0].endswith("4 configs, 0 already finished (skipped), 4 to run, running 2 now (--max-runs)")
    assert lines[1].startswith("[1/2] width=32 lr=0.01 -> ok val ")
    parent = _parent(store_uri, "tests")
    assert parent.data.tags[schema.T_STATUS] == schema.STATUS_INTERRUPTED and parent.info.status == "KILLED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {schema.A_SWEEP_SPEC, schema.A_SWEEP_PLAN}

    # every child carries the schema: full config params, derived params, provenance tags, summary metrics
    child = _children(store_uri, "tests")[0]
    assert set(RunConfig().to_flat()) | {schema.P_N_PARAMS, schema.P_STEPS} <= set(child.data.params)
    tags = child.data.tags
    assert config_hash(RunConfig.from_flat(child.data.params)) == tags[schema.T_CONFIG_HASH]  # params rebuild it
    assert tags[schema.T_PARENT_RUN_ID] == parent.info.run_id and tags[schema.T_SWEEP_ID] == plan.sweep_id
    assert tags[schema.T_RUN_KIND] == schema.RUN_KIND_TRAIN and tags[schema.T_STATUS] == schema.STATUS_OK
    assert tags[schema.T_CONFIG_HASH] in {p.config_hash for p in plan.points}
    assert schema.T_COMMAND in tags and schema.T_GIT_COMMIT in tags and schema.T_DEVICE in tags
    for name in (schema.S_FINAL_VAL_LOSS, schema.S_INITIAL_LOSS, schema.S_STEPS_DONE, schema.S_WALL_S):
        assert name in child.data.metrics
    assert len(client.get_metric_history(child.info.run_id, schema.M_TRAIN_LOSS)) == 4

    # 2. a child left 'running' by a killed process, with some history already logged
    stale_point = plan.points[2]
    stale_id = client.create_run(parent.info.experiment_id, tags={
        schema.T_SWEEP_ID: plan.sweep_id, schema.T_CONFIG_HASH: stale_point.config_hash,
        schema.T_RUN_KIND: schema.RUN_KIND_TRAIN, schema.T_STATUS: schema.STATUS_RUNNING}).info.run_id
    client.log_metric(stale_id, schema.M_TRAIN_LOSS, 5.0, step=3)

    # 3. resume: trains only the two missing configs; one of them crashes and the sweep goes on
    _failing_for(0.02, monkeypatch)
    lines.clear()
    second = sweep.run_sweep(plan, store_uri, SequentialExecutor(), say=lines.append)
    assert second.counts == {schema.STATUS_OK: 1, schema.STATUS_FAILED: 1} and second.skipped == 2
    assert "1 stale run(s) marked interrupted" in lines[0]
    assert any("-> failed: RuntimeError: simulated crash" in line for line in lines)
    stale = client.get_run(stale_id)
    assert stale.data.tags[schema.T_STATUS] == schema.STATUS_INTERRUPTED and stale.info.status == "KILLED"
    assert stale.data.metrics[schema.M_TRAIN_LOSS] == 5.0  # its data is kept
    by_hash = {r.data.tags[schema.T_CONFIG_HASH]: r for r in _children(store_uri, "tests")
               if schema.T_SUPERSEDED_BY not in r.data.tags}
    assert stale.data.tags[schema.T_SUPERSEDED_BY] == by_hash[stale_point.config_hash].info.run_id
    failed = by_hash[plan.points[3].config_hash]
    assert failed.data.tags[schema.T_STATUS] == schema.STATUS_FAILED and failed.info.status == "FAILED"
    assert _parent(store_uri, "tests").data.tags[schema.T_STATUS] == schema.STATUS_FAILED

    # 4. resume again: retries only the failed config
    monkeypatch.undo()
    third = sweep.run_sweep(plan, store_uri, SequentialExecutor(), say=lines.append)
    assert third.counts == {schema.STATUS_OK: 1} and third.left == 0
    assert client.get_run(failed.info.run_id).data.tags[schema.T_SUPERSEDED_BY]
    assert client.get_run(failed.info.run_id).data.tags[schema.T_STATUS] == schema.STATUS_FAILED  # kept
    assert _parent(store_uri, "tests").data.tags[schema.T_STATUS] == schema.STATUS_OK

    # 5. nothing left: a rerun trains nothing, and there is still exactly one parent
    fourth = sweep.run_sweep(plan, store_uri, SequentialExecutor(), say=lines.append)
    assert fourth.counts == {} and fourth.skipped == 4
    assert len(_children(store_uri, "tests")) == 2 + 1 + 2 + 1
    assert _parent(store_uri, "tests").info.run_id == parent.info.run_id


def test_ctrl_c_leaves_a_resumable_sweep(tmp_path: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.train

    plan = sweep.load_sweep(write_spec(tmp_path))

    def interrupted(cfg: RunConfig, logger: Any, extra_tags: dict[str, str] | None = None) -> Any:
        logger.set_tags({schema.T_STATUS: schema.STATUS_RUNNING})
        logger.log_metrics({schema.M_TRAIN_LOSS: 5.0}, step=1)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.train, "train_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(plan, store_uri, SequentialExecutor(), say=print)
    (killed,) = _children(store_uri, "tests")
    assert killed.info.status == "KILLED" and killed.data.tags[schema.T_STATUS] == schema.STATUS_RUNNING
    assert killed.data.metrics[schema.M_TRAIN_LOSS] == 5.0  # the buffered metric was flushed
    parent = _parent(store_uri, "tests")
    assert parent.data.tags[schema.T_STATUS] == schema.STATUS_INTERRUPTED and parent.info.status == "KILLED"

    monkeypatch.undo()
    assert sweep.run_sweep(plan, store_uri, SequentialExecutor(), say=print).counts == {schema.STATUS_OK: 1}
    killed = tracking.client_for(store_uri).get_run(killed.info.run_id)
    assert killed.data.tags[schema.T_STATUS] == schema.STATUS_INTERRUPTED
    assert killed.data.tags[schema.T_SUPERSEDED_BY]


def test_cli_sweep_exit_codes(tmp_path: Path, store_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, hparams={"hp.lr": [0.01]}, base={**TINY_BASE, "data": {"source": "/no/such.txt"}})
    assert main(["sweep", str(path), "--tracking-uri", store_uri]) == 1  # the run failed, was recorded, rc says so
    out = capsys.readouterr().out
    assert "[1/1] base -> failed:" in out
    (run,) = _children(store_uri, "tests")
    assert run.data.tags[schema.T_STATUS] == schema.STATUS_FAILED


def test_worker_pool_reports_dead_workers_as_failed_and_continues(tmp_path: Path) -> None:
    plan = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02, 0.03]}))
    tasks = sweep._tasks(plan, plan.points, "sqlite:///unused.db", "0", "parent")
    results: list[TaskResult] = []
    # sys.exit(task) kills the worker mid-task, as a segfault or an OOM kill would
    WorkerPoolExecutor([{}, {}], task_fn=sys.exit, poll_s=0.2).run(tasks, results.append)
    assert sorted(r.index for r in results) == [0, 1, 2]
    assert all(r.status == schema.STATUS_FAILED and "worker process died" in r.reason for r in results)


def test_worker_pool_fails_every_task_of_a_group_whose_worker_died(tmp_path: Path) -> None:
    plan = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02, 0.03]}))
    tasks = sweep._tasks(plan, plan.points, "sqlite:///unused.db", "0", "parent")
    results: list[TaskResult] = []
    # units [0, 1] (one shape, at most 2) and [2]; sys.exit(group) kills the worker holding the group, and its
    # replacement takes the single task (task_fn: a stand-in for training that needs no torch in the worker)
    alone = functools.partial(executors.failed_result, reason="trained alone", start=0.0)
    WorkerPoolExecutor([{}], task_fn=alone, poll_s=0.2, group_size=2, group_fn=sys.exit).run(tasks, results.append)
    by_index = {r.index: r for r in results}
    assert len(results) == len(by_index) == 3
    assert all("worker process died (exit code 1)" in by_index[i].reason for i in (0, 1))
    assert by_index[2].reason == "trained alone"


@pytest.mark.slow
def test_worker_pool_trains_batched_groups_in_a_spawned_process(tmp_path: Path, store_uri: str) -> None:
    """The gpu-pool path without a GPU: a spawned worker trains pickled units (a batched group of one shape, and a
    config alone) and logs one run per config to the store."""
    corpus = tmp_path / "corpus.txt"  # a small corpus keeps the worker's start-up short
    corpus.write_text("To be, or not to be, that is the question. " * 400)
    plan = sweep.load_sweep(write_spec(tmp_path, base={**TINY_BASE, "data": {"source": str(corpus)}},
                                       hparams={"hp.lr": [0.01, 0.02, 0.03]}))
    pool = WorkerPoolExecutor([{"OMP_NUM_THREADS": "1"}], device="cpu", poll_s=0.2, group_size=2)
    outcome = sweep.run_sweep(plan, store_uri, pool, say=print)
    assert outcome.counts == {schema.STATUS_OK: 3}  # one result per config
    runs = _children(store_uri, "tests")
    assert len(runs) == 3
    assert all(r.data.tags[schema.T_STATUS] == schema.STATUS_OK and r.info.status == "FINISHED" for r in runs)
    # units [lr 0.01, 0.02] (one batched model) and [lr 0.03] (alone, through execute_task)
    batched = {float(r.data.params["hp.lr"]): r.data.tags.get(schema.T_BATCH_SIZE) for r in runs}
    assert batched == {0.01: "2", 0.02: "2", 0.03: None}


@pytest.mark.gpu
@pytest.mark.skipif(not visible_gpus(), reason="needs a CUDA GPU")
def test_gpu_pool_sweep(tmp_path: Path, store_uri: str) -> None:
    plan = sweep.load_sweep(write_spec(tmp_path, hparams={"hp.lr": [0.01, 0.02]}))
    outcome = sweep.run_sweep(plan, store_uri, GpuPoolExecutor(), say=print)
    assert outcome.counts == {schema.STATUS_OK: 2}
    assert all(r.data.tags[schema.T_DEVICE].startswith("cuda") for r in _children(store_uri, "tests"))


def test_configs_sharing_a_shape_train_as_batched_groups(tmp_path: Path, store_uri: str) -> None:
    """--batch: same-shape configs train as one batched model, each still its own run; shapes are kept apart."""
    spec = write_spec(tmp_path, parameterizations=["sp", "mup"], axes={"model.width": [32, 64]},
                      hparams={"hp.lr": [1e-3, 1e-2]})
    plan = sweep.load_sweep(spec)
    outcome = sweep.run_sweep(plan, store_uri, SequentialExecutor(group_size=8), say=lambda _: None)
    assert outcome.counts[schema.STATUS_OK] == 8
    runs = _children(store_uri, "tests")
    assert len(runs) == 8
    by_width: dict[str, set[str]] = {}
    for r in runs:
        assert r.data.tags[schema.T_BATCH_SIZE] == "4"  # sp+mup x 2 LRs per width; widths never share a model
        by_width.setdefault(r.data.params["model.width"], set()).add(r.data.tags[schema.T_BATCH_INDEX])
    assert by_width == {"32": {"0", "1", "2", "3"}, "64": {"0", "1", "2", "3"}}
    again = sweep.run_sweep(plan, store_uri, SequentialExecutor(group_size=8), say=lambda _: None)
    assert again.skipped == 8 and sum(again.counts.values()) == 0
