"""Stage 5 of training: an Optuna study whose trials run as Prefect tasks on the Dask workers.

The study lives in an RDB storage (by default the metadata database's
PostgreSQL, else SQLite under ``MLOPS_HOME``), so every worker adds trials to
the same study. The flow
submits :func:`run_trial_chunk` tasks, each running some trials with its own
sampler seed; every trial records the Dask worker that ran it as the user
attribute ``worker``. Each trial cross-validates and reports the running mean
after every fold, so the median pruner stops poor trials early. The timeout is
a wall-clock deadline shared by all chunks. With several ``tuning_objectives``
the study is multi-objective (no pruning) and the summary carries the Pareto
front and the trial chosen from it (``tasks.training.multi_objective``).

A chunk may run again: Dask reschedules it when its worker dies, Prefect
retries it after a failure. Every trial records its chunk (user attribute
``chunk``), so a chunk that starts again runs only the trials it still owes,
and marks its trials left ``RUNNING`` by the attempt that died as failed and
``abandoned`` (a chunk runs once at a time, so nothing else still runs them).
The summary leaves abandoned trials out: the study ends with the number of
trials asked for, none counted twice.

Example:
    >>> plan_chunks(10, n_workers=2)
    [2, 2, 1, 1, 1, 1, 1, 1]
    >>> plan_chunks(10, n_workers=2, trials_per_task=4)
    [4, 3, 3]
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
import pandas as pd
from prefect import task

from blocks.pipeline import ParamSpec
from tasks.retry import maybe_fail
from tasks.training.fit import TrainingSpec, cv_splitter, evaluate, fit_pipeline, is_minimized
from tasks.training.multi_objective import (
    choose_trial,
    directions,
    multi_objective_scores,
    pareto_rows,
    selection_rule,
)
from tasks.training.study_storage import default_study_storage

WORKER_ATTR = "worker"
CHUNK_ATTR = "chunk"
ABANDONED_ATTR = "abandoned"


def storage_url(url: str | None = None) -> str:
    """The study storage: ``url``, else the installation's default (``tasks.training.study_storage``).

    The default is the metadata database's ``optuna`` schema on PostgreSQL, or
    SQLite at ``MLOPS_HOME/optuna.db`` when the metadata database is SQLite.
    """
    return url or default_study_storage()


def open_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage that waits for SQLite's write lock instead of failing (one per URL and process)."""
    return _storage_at(storage_url(url))


@functools.lru_cache(maxsize=8)
def _storage_at(resolved: str) -> optuna.storages.RDBStorage:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if resolved.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    storage = optuna.storages.RDBStorage(resolved, engine_kwargs=kwargs)
    if resolved.startswith("sqlite"):
        _sqlite_wal(storage)
    return storage


def _sqlite_wal(storage: optuna.storages.RDBStorage) -> None:
    """WAL journal, ``synchronous=NORMAL``: readers never block the writer; a commit is not an fsync."""
    import sqlalchemy as sa

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sa.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened before the listener reconnect with it


def study_name(model: str, token: str) -> str:
    """One study per model and pipeline token (config + data), so a re-run resumes it.

    Example:
        >>> study_name("churn", "ab" * 32)
        'churn-abababababab'
    """
    return f"{model}-{token[:12]}"


def plan_chunks(trials: int, n_workers: int, trials_per_task: int | None = None) -> list[int]:
    """Trials per task: about four tasks per worker (for balance), or ``trials_per_task`` each."""
    if trials_per_task:
        count = max(1, -(-trials // trials_per_task))
    else:
        count = max(1, min(trials, 4 * n_workers))
    base, rest = divmod(trials, count)
    return [base + (1 if i < rest else 0) for i in range(count)]


def make_sampler(tuner: str, seed: int, space: Mapping[str, ParamSpec]) -> optuna.samplers.BaseSampler:
    """TPE, random, or a grid over the space (ints/floats by ``step``, categoricals by choices)."""
    if tuner == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tuner == "grid":
        return optuna.samplers.GridSampler(grid_space(space), seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def grid_space(space: Mapping[str, ParamSpec]) -> dict[str, list[Any]]:
    """Every value of each parameter.

    Example:
        >>> grid_space({"d": ParamSpec(type="int", low=2, high=4)})
        {'d': [2, 3, 4]}
    """
    out: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            out[name] = list(spec.choices or [])
        elif spec.type == "int":
            out[name] = list(range(int(spec.low or 0), int(spec.high or 0) + 1, int(spec.step or 1)))
        else:
            low, high, width = float(spec.low or 0.0), float(spec.high or 0.0), float(spec.step or 1.0)
            out[name] = [round(low + i * width, 12) for i in range(round((high - low) / width) + 1)]
    return out


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Sample one configuration of the space."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec.choices or []))
        elif spec.type == "int":
            params[name] = trial.suggest_int(
                name, int(spec.low or 0), int(spec.high or 0), step=int(spec.step or 1), log=spec.log
            )
        else:
            params[name] = trial.suggest_float(
                name, float(spec.low or 0), float(spec.high or 0), step=spec.step, log=spec.log
            )
    return params


def worker_id() -> str:
    """The Dask worker running this code, else ``local:<pid>``."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def trial_score(
    trial: optuna.Trial,
    spec: TrainingSpec,
    space: Mapping[str, ParamSpec],
    X: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    folds: int,
) -> float:
    """Mean cross-validated ``metric`` of one sampled configuration, pruned after weak folds."""
    params = suggest(trial, space)
    scores: list[float] = []
    for step, (tr, te) in enumerate(cv_splitter(spec.task, folds, spec.seed).split(X, y)):
        fitted = fit_pipeline(spec, params, X.iloc[tr], y[tr])
        scores.append(evaluate(fitted, X.iloc[te], y[te], spec.task, [metric])[metric])
        trial.report(float(np.mean(scores)), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(np.mean(scores))


def make_pruner(prune: bool = True) -> optuna.pruners.BasePruner:
    """The median pruner (after 3 complete trials, from the second fold on), or none."""
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


def create_study(
    name: str, storage: str | None, metric: str, tuner: str = "tpe", objectives: list[str] | None = None
) -> str:
    """Create (or reopen) the study, with one direction per objective when there are several."""
    if objectives:
        optuna.create_study(
            study_name=name,
            storage=open_storage(storage),
            directions=directions(objectives),
            load_if_exists=True,
        )
        return name
    optuna.create_study(
        study_name=name,
        storage=open_storage(storage),
        direction="minimize" if is_minimized(metric) else "maximize",
        load_if_exists=True,
    )
    return name


@task(name="run-trial-chunk", retries=1, retry_delay_seconds=1)
def run_trial_chunk(
    name: str,
    storage: str | None,
    chunk: int,
    n_trials: int,
    seed: int,
    tuner: str,
    space: dict[str, ParamSpec],
    spec: TrainingSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    folds: int,
    deadline: float | None = None,
    cache_token: str | None = None,
    prune: bool = True,
    objectives: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``n_trials`` trials of the study on this worker (sampler seed ``seed``), until ``deadline``.

    With ``objectives`` each trial returns every objective (multi-objective study, no pruning).
    """
    maybe_fail("tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    worker = worker_id()
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(storage),
        sampler=make_sampler(tuner, seed, space),
        pruner=make_pruner(prune and not objectives),
    )
    done: list[int] = []
    owed = n_trials - _resume_chunk(study, chunk)

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        # Each attribute is a write of its own: the chunk first, so that a trial seen on a worker
        # always names its chunk, and the chunk's next attempt can abandon it if the worker dies.
        trial.set_user_attr(CHUNK_ATTR, chunk)
        trial.set_user_attr(WORKER_ATTR, worker)
        done.append(trial.number)
        if objectives:
            return multi_objective_scores(suggest(trial, space), spec, X, y, objectives, folds)
        return trial_score(trial, spec, space, X, y, metric, folds)

    timeout = None if deadline is None else max(0.0, deadline - time.time())
    if owed > 0 and (timeout is None or timeout > 0):
        study.optimize(objective, n_trials=owed, timeout=timeout, catch=(ValueError,))
    return {"chunk": chunk, "worker": worker, "trials": done}


def _resume_chunk(study: optuna.Study, chunk: int) -> int:
    """Trials this chunk finished in earlier attempts; its trials still RUNNING become abandoned."""
    finished = 0
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(CHUNK_ATTR) != chunk or t.user_attrs.get(ABANDONED_ATTR):
            continue
        if t.state == optuna.trial.TrialState.RUNNING:  # the attempt that ran it died
            study._storage.set_trial_user_attr(t._trial_id, ABANDONED_ATTR, "its worker stopped")
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        elif t.state.is_finished():
            finished += 1
    return finished


def _counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if not t.user_attrs.get(ABANDONED_ATTR)]


def summarize_study(
    name: str,
    storage: str | None,
    objectives: list[str] | None = None,
    constraints: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Best value and parameters, trial counts by state, and the trials table rows.

    For a multi-objective study (``objectives``) also the Pareto front and the
    trial chosen from it by the declared rule (``tasks.training.multi_objective``);
    ``best_params`` and ``best_value`` are then the chosen trial's.
    """
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    every = study.get_trials(deepcopy=False)
    trials = _counted(every)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if objectives:
        summary = _summarize_multi(study, trials, complete, objectives, constraints or {})
        return {**summary, "abandoned": len(every) - len(trials)}
    rows = [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            "value": None if t.value is None else round(float(t.value), 6),
            "worker": t.user_attrs.get(WORKER_ATTR),
            "seconds": None if t.duration is None else round(t.duration.total_seconds(), 3),
            **{k: v for k, v in t.params.items()},
        }
        for t in trials
    ]
    best = study.best_trial if complete else None
    return {
        "study": name,
        "best_value": None if best is None else float(best.value or 0.0),
        "best_params": {} if best is None else dict(best.params),
        "trials": len(trials),
        "abandoned": len(every) - len(trials),
        "completed": len(complete),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "workers": sorted(
            {str(t.user_attrs.get(WORKER_ATTR)) for t in trials if t.user_attrs.get(WORKER_ATTR)}
        ),
        "rows": rows,
    }


def _summarize_multi(
    study: optuna.Study,
    trials: list[optuna.trial.FrozenTrial],
    complete: list[optuna.trial.FrozenTrial],
    objectives: list[str],
    constraints: dict[str, float],
) -> dict[str, Any]:
    rows = [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            **{
                o: None if not t.values else round(float(v), 6)
                for o, v in zip(objectives, t.values or [None] * len(objectives), strict=True)
            },
            "worker": t.user_attrs.get(WORKER_ATTR),
            "seconds": None if t.duration is None else round(t.duration.total_seconds(), 3),
            **dict(t.params),
        }
        for t in trials
    ]
    front = pareto_rows(study, objectives) if complete else []
    chosen, met = choose_trial(front, objectives, constraints) if front else ({}, False)
    by_number = {t.number: t for t in complete}
    best = by_number.get(int(chosen["trial"])) if chosen else None
    return {
        "study": study.study_name,
        "objectives": list(objectives),
        "constraints": dict(constraints),
        "selection_rule": selection_rule(objectives, constraints),
        "pareto_front": front,
        "chosen_trial": None if best is None else best.number,
        "constraints_met": met,
        "best_value": None if best is None else float((best.values or [0.0])[0]),
        "best_values": {}
        if best is None
        else dict(zip(objectives, map(float, best.values or []), strict=True)),
        "best_params": {} if best is None else dict(best.params),
        "trials": len(trials),
        "completed": len(complete),
        "pruned": 0,
        "workers": sorted(
            {str(t.user_attrs.get(WORKER_ATTR)) for t in trials if t.user_attrs.get(WORKER_ATTR)}
        ),
        "rows": rows,
    }


@task(name="create-study", retries=2, retry_delay_seconds=1)
def create_study_task(
    name: str, storage: str | None, metric: str, tuner: str, objectives: list[str] | None = None
) -> str:
    """Stage 5a: the study in shared storage."""
    return create_study(name, storage, metric, tuner, objectives)


@task(name="summarize-study", retries=2, retry_delay_seconds=1)
def summarize_study_task(
    name: str,
    storage: str | None,
    objectives: list[str] | None = None,
    constraints: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Stage 5c: the study's best configuration and trials table (and Pareto front)."""
    return summarize_study(name, storage, objectives, constraints)


def chunk_seed(seed: int, chunk: int) -> int:
    """Each chunk's own sampler seed.

    Example:
        >>> chunk_seed(42, 0) != chunk_seed(42, 1)
        True
    """
    return int(hashlib.sha256(f"{seed}:{chunk}".encode()).hexdigest()[:8], 16)


def count_finished(name: str, storage: str | None) -> int:
    """Finished (complete, pruned or failed) trials of a study; 0 when it does not exist yet."""
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        return 0
    states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    return sum(t.state not in states for t in _counted(study.get_trials(deepcopy=False)))
