"""The Ray task body and the executor's settings, without a Ray cluster (quick): what a retried task does with the
runs its dead attempt left behind, and how ``--executor ray`` is configured from the environment and ``--batch``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import write_spec
from trainer import schema, sweep, tracking
from trainer.cli import main
from trainer.executors import ExecutorError, SweepTask, TaskResult, make_executor

ray_executor = pytest.importorskip("trainer.ray_executor", reason="Ray is not installed (requirements.txt)")


def test_a_retried_task_retires_its_dead_attempt_and_never_trains_a_finished_config(
        tmp_path: Path, store_uri: str) -> None:
    plan = sweep.load_sweep(write_spec(tmp_path, "unit"))
    experiment_id = tracking.ensure_store(store_uri, "unit")
    client = tracking.client_for(store_uri)
    tasks = sweep._tasks(plan, plan.points[:2], store_uri, experiment_id, "parent")
    # config 0: a dead attempt left 'running'; config 1: a dead attempt that finished but could not report
    dead = client.create_run(experiment_id, tags={**tasks[0].tags, schema.T_STATUS: schema.STATUS_RUNNING})
    done = client.create_run(experiment_id, tags={**tasks[1].tags, schema.T_STATUS: schema.STATUS_OK})
    client.log_metric(done.info.run_id, schema.S_FINAL_VAL_LOSS, 3.0)
    trained: list[int] = []

    def train(task: SweepTask) -> TaskResult:
        trained.append(task.index)
        run_id = client.create_run(experiment_id, tags={**task.tags, schema.T_STATUS: schema.STATUS_OK}).info.run_id
        return TaskResult(task.index, run_id, schema.STATUS_OK, "", {}, 0.1)

    def train_group(group: list[SweepTask]) -> list[TaskResult]:
        raise AssertionError(f"only one config was left to train, got a group of {len(group)}")

    first, second = ray_executor.run_unit(tasks, train, train_group)
    assert trained == [0]
    assert second.run_id == done.info.run_id and second.status == schema.STATUS_OK
    assert second.summary == {schema.S_FINAL_VAL_LOSS: 3.0}
    retired = client.get_run(dead.info.run_id)
    assert retired.data.tags[schema.T_STATUS] == schema.STATUS_INTERRUPTED and retired.info.status == "KILLED"
    assert retired.data.tags[schema.T_STATUS_REASON] == ray_executor.DEAD_WORKER_REASON
    assert retired.data.tags[schema.T_SUPERSEDED_BY] == first.run_id


@pytest.mark.parametrize(("name", "value"), [("HPT_RAY_GROUP_SIZE", "two"), ("HPT_RAY_GPUS_PER_RUN", "-1")])
def test_bad_ray_settings_are_refused_before_connecting(monkeypatch: pytest.MonkeyPatch, name: str,
                                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ExecutorError, match=name):
        make_executor("ray")


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--batch", "4"], "2", 4),  # --batch given: it wins over the environment
    (["--batch", "4"], "two", 4),  # ... which is then not even read
    ([], "2", 2),
    ([], None, 1),  # neither: one config per Ray task
])
def test_batch_flag_overrides_the_ray_group_size_variable(
        tmp_path: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch, argv: list[str], env: str | None,
        expected: int) -> None:
    # no Ray instance: the executor sees a 2-CPU cluster, and the sweep itself is not run
    monkeypatch.setattr(ray_executor.RayExecutor, "_connect", lambda self, num_cpus: False)
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: {"CPU": 2.0})
    if env is None:
        monkeypatch.delenv(ray_executor.ENV_GROUP_SIZE, raising=False)
    else:
        monkeypatch.setenv(ray_executor.ENV_GROUP_SIZE, env)
    made: list[Any] = []

    def run_sweep(plan: sweep.SweepPlan, uri: str, executor: Any, **_: Any) -> sweep.SweepOutcome:
        made.append(executor)
        return sweep.SweepOutcome(plan.sweep_id, "parent", 0, Counter(), 0)

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    spec = write_spec(tmp_path, "unit")
    assert main(["sweep", str(spec), "--executor", "ray", "--tracking-uri", store_uri, *argv]) == 0
    (executor,) = made
    assert isinstance(executor, ray_executor.RayExecutor) and executor.group_size == expected
