"""Sweeps: a YAML spec expanded into run configs, trained as child runs of one parent MLflow run, resumable.

The whole expansion is validated before anything is written or trained, so a typo in a field name is refused in
a second instead of after an hour. A sweep is identified by its name plus a digest of the config hashes it
expands to: rerunning the same spec (however it is formatted) resumes the same sweep, and finished configs are
never trained twice; changing the grid makes a new sweep. See docs/sweeps.md for the format and the semantics.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainer import schema
from trainer.config import ConfigError, RunConfig, config_hash, load_config
from trainer.executors import (
    DEFAULT_GROUP_SIZE,
    EXECUTORS,
    Executor,
    ExecutorError,
    SweepTask,
    TaskResult,
    make_executor,
)
from trainer.provenance import provenance_tags
from trainer.tracking import (
    MlflowRunLogger,
    add_tracking_argument,
    analyze_store,
    client_for,
    ensure_store,
    resolve_tracking_uri,
    search_all_runs,
    sqlite_path,
    tag_filter,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Names this module adds to the run schema (parent-run params/artifacts and run.kind values).

SPEC_KEYS = ("name", "experiment", "base", "axes", "hparams", "parameterizations", "seeds")
LOG2_KEYS = ("log2_min", "log2_max", "num")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Say = Callable[[str], None]
_print = functools.partial(print, flush=True)


# ---- the spec --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One swept config field; ``log2`` marks values generated from a base-2 grid (shown as 2^k)."""

    key: str
    values: tuple[Any, ...]
    log2: bool = False

    def show(self, value: Any) -> str:
        if self.log2:
            exponent = round(math.log2(value), 6)
            return f"2^{exponent:g}"
        return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SweepPoint:
    index: int
    overrides: dict[str, Any]
    config: RunConfig
    config_hash: str
    label: str


@dataclass(frozen=True)
class SweepPlan:
    """A validated, expanded spec: everything needed to run or resume it."""

    name: str
    experiment: str
    source: Path
    spec_text: str
    base: RunConfig
    dims: tuple[Dimension, ...]
    points: tuple[SweepPoint, ...]
    sweep_id: str
    n_duplicates: int = 0  # grid points that collapsed onto an earlier point's config


def _spec_error(source: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {key}", message)


def _rewrap(exc: ConfigError, source: Path, prefix: str = "", context: str = "") -> ConfigError:
    """The same error, naming the spec file (and the point that failed) in front of the dotted field."""
    message = str(exc)[len(exc.field) + 2:]
    return _spec_error(source, prefix + exc.field, message + context)


def load_sweep(path: str | Path) -> SweepPlan:
    """Read, validate and expand a sweep spec. Raises ConfigError naming the spec file and the field."""
    source = Path(path)
    try:
        text = source.read_text()
        raw = yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(str(source), "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(source), f"not valid YAML: {exc}") from None
    return parse_sweep(raw, source, text)


def parse_sweep(raw: Any, source: Path, text: str = "") -> SweepPlan:
    """Validate and expand a parsed spec; ``source`` names the spec in errors and anchors a relative ``base``."""
    if not isinstance(raw, dict):
        raise ConfigError(str(source), "a sweep spec must be a mapping (name, experiment, base, axes, hparams …)")
    for key in raw:
        if key not in SPEC_KEYS:
            raise _spec_error(source, str(key), f"unknown spec key; expected one of {list(SPEC_KEYS)}")
    name = _required_name(raw, "name", source)
    experiment = _required_name(raw, "experiment", source)
    base = _load_base(raw.get("base"), source)
    dims = _dimensions(raw, source)
    points, n_duplicates = _expand(base, dims, source)
    digest = hashlib.sha256(json.dumps(sorted(p.config_hash for p in points)).encode()).hexdigest()[:8]
    return SweepPlan(name=name, experiment=experiment, source=source, spec_text=text, base=base, dims=dims,
                     points=tuple(points), sweep_id=f"{name}-{digest}", n_duplicates=n_duplicates)


def _required_name(raw: dict[str, Any], key: str, source: Path) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise _spec_error(source, key, f"required; letters, digits, '.', '_' or '-' (got {value!r})")
    return value


def _load_base(base: Any, source: Path) -> RunConfig:
    """``base`` is a config file path relative to the spec, an inline nested config, or absent (defaults)."""
    if base is None:
        return RunConfig()
    if isinstance(base, str):
        return load_config(source.parent / base)  # its errors name the base file
    if isinstance(base, dict):
        try:
            return RunConfig.from_dict(base)
        except ConfigError as exc:
            raise _rewrap(exc, source, prefix="base.") from None
    raise _spec_error(source, "base", f"expected a config file path or a mapping, got {base!r}")


def _dimensions(raw: dict[str, Any], source: Path) -> tuple[Dimension, ...]:
    """Swept fields in expansion order: parameterizations, axes, hparams, seeds (the last varies fastest)."""
    dims: list[Dimension] = []
    if "parameterizations" in raw:
        dims.append(_dimension(schema.P_PARAMETERIZATION, raw["parameterizations"], source, "parameterizations"))
    for section in ("axes", "hparams"):
        entries = raw.get(section) or {}
        if not isinstance(entries, dict):
            raise _spec_error(source, section, "expected a mapping of dotted config fields to value lists")
        dims.extend(_dimension(str(key), spec, source, f"{section}.{key}") for key, spec in entries.items())
    if "seeds" in raw:
        dims.append(_dimension(schema.P_SEED, raw["seeds"], source, "seeds"))
    seen: set[str] = set()
    for dim in dims:
        if dim.key in seen:
            raise _spec_error(source, dim.key, "swept twice (check parameterizations/seeds against axes/hparams)")
        seen.add(dim.key)
    return tuple(dims)


def _dimension(key: str, spec: Any, source: Path, where: str) -> Dimension:
    """A value list, or a base-2 log grid ``{log2_min, log2_max, num}`` (inclusive, evenly spaced exponents)."""
    if isinstance(spec, dict):
        if set(spec) != set(LOG2_KEYS):
            raise _spec_error(source, where, f"a log grid needs exactly {list(LOG2_KEYS)}, got {sorted(spec)}")
        lo, hi, num = spec["log2_min"], spec["log2_max"], spec["num"]
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise _spec_error(source, f"{where}.num", f"expected a positive integer, got {num!r}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)) or lo > hi:
            raise _spec_error(source, where, f"expected numbers log2_min <= log2_max, got {lo!r}, {hi!r}")
        step = (hi - lo) / (num - 1) if num > 1 else 0.0
        return Dimension(key, tuple(2.0 ** round(lo + i * step, 12) for i in range(num)), log2=True)
    if not isinstance(spec, list) or not spec:
        raise _spec_error(source, where, f"expected a non-empty list of values or a log2 grid, got {spec!r}")
    if any(isinstance(v, dict | list) for v in spec):
        raise _spec_error(source, where, "values must be scalars")
    return Dimension(key, tuple(spec))


def _short_names(dims: Sequence[Dimension]) -> dict[str, str]:
    """Label names: the field without its section (``width``, ``lr``, ``lr.token_emb``), ``param`` for
    param.name; the full dotted key where two would collide."""
    short = {d.key: d.key.split(".", 1)[-1] for d in dims}
    short = {k: (k.split(".")[0] if v == "name" else v) for k, v in short.items()}
    counts = Counter(short.values())
    return {k: (v if counts[v] == 1 else k) for k, v in short.items()}


def _expand(base: RunConfig, dims: tuple[Dimension, ...], source: Path) -> tuple[list[SweepPoint], int]:
    """Cartesian product in dimension order; every point validated; points with an equal config hash kept once."""
    names = _short_names(dims)
    shown = [d for d in dims if len(d.values) > 1]
    points: list[SweepPoint] = []
    seen: set[str] = set()
    duplicates = 0
    for combo in itertools.product(*(d.values for d in dims)):
        overrides = {d.key: v for d, v in zip(dims, combo, strict=True)}
        label = " ".join(f"{names[d.key]}={d.show(overrides[d.key])}" for d in shown) or "base"
        try:
            cfg = base.with_overrides(overrides) if overrides else base
        except ConfigError as exc:
            raise _rewrap(exc, source, context=f" (at sweep point {label})" if shown else "") from None
        h = config_hash(cfg)
        if h in seen:
            duplicates += 1
            continue
        seen.add(h)
        points.append(SweepPoint(len(points), overrides, cfg, h, label))
    return points, duplicates


# ---- resume state ------------------------------------------------------------------------------------------
@dataclass
class ResumeState:
    """What the store already holds for a sweep id, from one search over the experiment."""

    parent: Run | None = None
    finished: dict[str, str] = field(default_factory=dict)  # config hash -> run id of a finished (ok/diverged) run
    stale: list[Run] = field(default_factory=list)  # children still tagged running: their process is gone
    unfinished: dict[str, list[str]] = field(default_factory=dict)  # hash -> earlier attempts not yet superseded
    reused: set[str] = field(default_factory=set)  # hashes in ``finished`` whose run belongs to another sweep

    @classmethod
    def from_runs(cls, runs: Sequence[Run]) -> ResumeState:
        state = cls()
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            tags = run.data.tags
            if tags.get(schema.T_RUN_KIND) == schema.RUN_KIND_SWEEP:
                if state.parent is None:
                    state.parent = run
                continue
            h = tags.get(schema.T_CONFIG_HASH)
            if not h:
                continue
            status = tags.get(schema.T_STATUS, schema.STATUS_RUNNING)
            if status in schema.FINISHED_STATUSES:
                state.finished.setdefault(h, run.info.run_id)
                continue
            if status == schema.STATUS_RUNNING:
                state.stale.append(run)
            if schema.T_SUPERSEDED_BY not in tags:
                state.unfinished.setdefault(h, []).append(run.info.run_id)
        return state


def _find_runs(client: MlflowClient, experiment_id: str, plan: SweepPlan) -> ResumeState:
    """This sweep's runs, plus finished runs of the same configs made by other sweeps of the experiment: editing a
    spec (another seed, a wider grid) changes its sweep id, and the configs it shares with the old spec must not
    train twice. The config hash covers every setting that changes training, so such a run is the same result."""
    state = ResumeState.from_runs(search_all_runs(client, experiment_id, tag_filter(schema.T_SWEEP_ID,
                                                                                    plan.sweep_id)))
    wanted = {p.config_hash for p in plan.points} - set(state.finished)
    if wanted:
        for run in search_all_runs(client, experiment_id, tag_filter(schema.T_RUN_KIND, schema.RUN_KIND_TRAIN)):
            tags = run.data.tags
            h = tags.get(schema.T_CONFIG_HASH)
            if h in wanted and tags.get(schema.T_STATUS) in schema.FINISHED_STATUSES:
                state.finished.setdefault(h, run.info.run_id)
                state.reused.add(h)
    return state


def read_state(plan: SweepPlan, tracking_uri: str) -> ResumeState:
    """The resume state without writing anything: a store or experiment that does not exist yet is empty."""
    path = sqlite_path(tracking_uri)
    if path is not None and not path.exists():
        return ResumeState()
    client = client_for(tracking_uri)
    experiment = client.get_experiment_by_name(plan.experiment)
    if experiment is None:
        return ResumeState()
    return _find_runs(client, experiment.experiment_id, plan)


def _retire_stale(client: MlflowClient, state: ResumeState) -> None:
    """Children found still 'running' belong to a dead process (one sweep process per sweep id at a time): mark
    them interrupted and KILLED. Earlier attempts of a config that has since finished point to the finished run."""
    for run in state.stale:
        client.set_tag(run.info.run_id, schema.T_STATUS, schema.STATUS_INTERRUPTED)
        client.set_terminated(run.info.run_id, "KILLED")
    for h in [h for h in state.unfinished if h in state.finished]:
        for run_id in state.unfinished.pop(h):
            client.set_tag(run_id, schema.T_SUPERSEDED_BY, state.finished[h])


# ---- the parent run ------------------------------------------------------------------------------------------
def _plan_json(plan: SweepPlan) -> dict[str, Any]:
    return {
        "sweep_id": plan.sweep_id,
        "name": plan.name,
        "base": plan.base.to_flat(),
        "dims": {d.key: list(d.values) for d in plan.dims},
        "points": [{"index": p.index, "label": p.label, "config_hash": p.config_hash, "overrides": p.overrides}
                   for p in plan.points],
    }


def _open_parent(client: MlflowClient, experiment_id: str, plan: SweepPlan, parent: Run | None) -> str:
    """The sweep's parent run: found again on resume (and reopened), else created with the spec and plan."""
    if parent is not None:
        run_id = parent.info.run_id
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, schema.T_STATUS, schema.STATUS_RUNNING)
        return run_id
    tags = {schema.T_RUN_KIND: schema.RUN_KIND_SWEEP, schema.T_SWEEP_ID: plan.sweep_id, schema.T_SWEEP_NAME: plan.name,
            schema.T_STATUS: schema.STATUS_RUNNING, schema.T_SOURCE: "trainer", **provenance_tags()}
    run_id = client.create_run(experiment_id, run_name=plan.sweep_id, tags=tags).info.run_id
    logger = MlflowRunLogger(client, run_id)
    logger.log_params({schema.P_SWEEP_N_CONFIGS: len(plan.points),
                       schema.P_SWEEP_DIMS: json.dumps({d.key: list(d.values) for d in plan.dims})})
    client.log_text(run_id, plan.spec_text, schema.A_SWEEP_SPEC)
    logger.log_json(schema.A_SWEEP_PLAN, _plan_json(plan))
    return run_id


def _close_parent(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    mlflow_status = {schema.STATUS_OK: "FINISHED", schema.STATUS_FAILED: "FAILED"}.get(status, "KILLED")
    client.set_tag(run_id, schema.T_STATUS, status)
    client.set_tag(run_id, schema.T_STATUS_REASON, reason)
    client.set_terminated(run_id, mlflow_status)


# ---- running ---------------------------------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    """What one invocation did: statuses of the runs it trained, configs skipped and configs still left."""

    sweep_id: str
    parent_run_id: str
    skipped: int
    counts: Counter[str]
    left: int  # configs not finished after this invocation (failed, or not reached because of --max-runs)


def _result_text(result: TaskResult) -> str:
    if result.status == schema.STATUS_OK:
        val = result.summary.get(schema.S_FINAL_VAL_LOSS)
        return "ok" if val is None else f"ok val {val:.3f}"
    if result.status == schema.STATUS_DIVERGED:
        step = result.summary.get(schema.S_DIVERGED_STEP)
        return "diverged" if step is None else f"diverged at step {int(step)}"
    first_line = (result.reason.splitlines() or [""])[0]
    return f"{result.status}: {first_line[:160]}"


def _tasks(plan: SweepPlan, points: Sequence[SweepPoint], tracking_uri: str, experiment_id: str,
           parent_run_id: str) -> list[SweepTask]:
    command = provenance_tags()[schema.T_COMMAND]
    return [SweepTask(index=p.index, config=p.config.to_flat(), config_hash=p.config_hash, label=p.label,
                      tags={schema.T_SWEEP_ID: plan.sweep_id, schema.T_SWEEP_NAME: plan.name,
                            schema.T_RUN_KIND: schema.RUN_KIND_TRAIN, schema.T_CONFIG_HASH: p.config_hash,
                            schema.T_COMMAND: command},
                      tracking_uri=tracking_uri, experiment_id=experiment_id, parent_run_id=parent_run_id)
            for p in points]


def run_sweep(plan: SweepPlan, tracking_uri: str, executor: Executor, *, max_runs: int | None = None,
              say: Say = _print) -> SweepOutcome:
    """Run (or resume) a sweep: skip configs already finished in this sweep, retire stale runs, train the rest
    (at most ``max_runs``), one progress line per run. KeyboardInterrupt propagates after closing the parent."""
    experiment_id = ensure_store(tracking_uri, plan.experiment)
    client = client_for(tracking_uri)
    state = _find_runs(client, experiment_id, plan)
    parent_id = _open_parent(client, experiment_id, plan, state.parent)
    _retire_stale(client, state)
    todo = [p for p in plan.points if p.config_hash not in state.finished]
    selected = todo if max_runs is None else todo[:max_runs]
    say(_header(plan, tracking_uri, len(plan.points) - len(todo), len(todo), len(selected), len(state.stale),
                len(state.reused)))
    by_index = {p.index: p for p in selected}
    counts: Counter[str] = Counter()
    started = time.perf_counter()

    def on_result(result: TaskResult) -> None:
        counts[result.status] += 1
        point = by_index[result.index]
        say(f"[{counts.total()}/{len(selected)}] {point.label} -> {_result_text(result)} ({result.wall_s:.1f}s)")
        if result.run_id is not None:
            for old in state.unfinished.pop(point.config_hash, []):
                client.set_tag(old, schema.T_SUPERSEDED_BY, result.run_id)

    try:
        executor.run(_tasks(plan, selected, tracking_uri, experiment_id, parent_id), on_result)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            _close_parent(client, parent_id, schema.STATUS_INTERRUPTED, "interrupted (Ctrl-C); rerun to resume")
        else:
            _close_parent(client, parent_id, schema.STATUS_FAILED, f"sweep stopped by {type(exc).__name__}: {exc}")
        raise
    finally:
        analyze_store(tracking_uri)
    left = len(todo) - sum(counts[s] for s in schema.FINISHED_STATUSES)
    _close_parent(client, parent_id, *_parent_verdict(len(todo) - len(selected), counts[schema.STATUS_FAILED]))
    trained = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to train"
    say(f"done in {time.perf_counter() - started:.1f}s: {trained}; {left} config(s) left; parent run {parent_id}")
    return SweepOutcome(plan.sweep_id, parent_id, len(plan.points) - len(todo), counts, left)


def _parent_verdict(not_reached: int, failed: int) -> tuple[str, str]:
    if not_reached:
        return schema.STATUS_INTERRUPTED, f"stopped by --max-runs; {not_reached} config(s) not run yet"
    if failed:
        return schema.STATUS_FAILED, f"{failed} config(s) failed; rerun to retry them"
    return schema.STATUS_OK, ""


def _header(plan: SweepPlan, tracking_uri: str, n_skipped: int, n_todo: int, n_selected: int, n_stale: int,
            n_reused: int) -> str:
    reused = f"; {n_reused} of them by another sweep of the experiment" if n_reused else ""
    parts = [f"sweep {plan.sweep_id} (experiment {plan.experiment!r}, {tracking_uri}): {len(plan.points)} configs",
             f"{n_skipped} already finished (skipped{reused})", f"{n_todo} to run"]
    if n_selected < n_todo:
        parts.append(f"running {n_selected} now (--max-runs)")
    if n_stale:
        parts.append(f"{n_stale} stale run(s) marked interrupted")
    if plan.n_duplicates:
        parts.append(f"{plan.n_duplicates} duplicate grid point(s) dropped")
    return ", ".join(parts)


def describe_plan(plan: SweepPlan, tracking_uri: str) -> list[str]:
    """The ``--dry-run`` table: every point, its config hash, and whether a run would train or skip it."""
    state = read_state(plan, tracking_uri)
    n_skip = sum(p.config_hash in state.finished for p in plan.points)
    lines = [_header(plan, tracking_uri, n_skip, len(plan.points) - n_skip, len(plan.points) - n_skip, 0,
                     len(state.reused)),
             f"{'#':>4}  {'action':<26} {'config hash':<16}  point"]
    for p in plan.points:
        if p.config_hash in state.finished:
            action = f"skip (run {state.finished[p.config_hash][:8]})"
        elif p.config_hash in state.unfinished:
            action = f"rerun ({len(state.unfinished[p.config_hash])} unfinished before)"
        else:
            action = "run"
        lines.append(f"{p.index:>4}  {action:<26} {p.config_hash:<16}  {p.label}")
    return lines


# ---- command line ------------------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="sweep spec YAML (see docs/sweeps.md)")
    add_tracking_argument(parser)
    parser.add_argument("--executor", choices=EXECUTORS, default="sequential",
                        help="sequential (in this process), gpu-pool (one worker process per visible GPU) or ray "
                             "(one Ray task per run; $RAY_ADDRESS for a cluster, see docs/cluster.md)")
    parser.add_argument("--batch", type=_positive_int, default=None, metavar="N",
                        help="train up to N configs that share a shape as one batched model (every executor; "
                             f"1 = one run at a time; default {DEFAULT_GROUP_SIZE}, for ray $HPT_RAY_GROUP_SIZE "
                             "or 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs and what would be skipped")
    parser.add_argument("--max-runs", type=_positive_int, default=None, metavar="N",
                        help="train at most N runs, then stop (rerun to continue)")


def cli_sweep(args: argparse.Namespace) -> int:
    """``python -m trainer sweep``: 0 when every run trained now is ok or diverged, 1 when some failed, 2 when the
    spec or the executor is refused (nothing trained), 130 on Ctrl-C. ConfigError propagates to the caller."""
    plan = load_sweep(args.spec)
    uri = resolve_tracking_uri(args.tracking_uri)
    if args.dry_run:
        for line in describe_plan(plan, uri):
            print(line)
        return 0
    try:
        executor = make_executor(args.executor, args.batch)
    except ExecutorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = run_sweep(plan, uri, executor, max_runs=args.max_runs)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 1 if outcome.counts[schema.STATUS_FAILED] else 0
