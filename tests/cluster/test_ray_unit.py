"""The Ray task body and the executor's settings, without a Ray cluster (quick): what a retried task does with the
runs its dead attempt left behind, and how ``--executor ray`` is configured from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.helpers import write_spec
from trainer import schema, sweep, tracking
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
