"""The fraud use case of ``make demo`` on a shared-nothing installation, driven through ``run_deployment``.

Every step runs where it would run on real machines: flows on the Prefect
worker's host, tuning trials on the two Dask worker hosts, predictions on the
model server's host; this test process plays the team's laptop and reaches
them only through the Prefect API, the model server's address, the metadata
database and S3. The canary of the promoted version is not started from here:
the promotion's event makes the Prefect server start it (the deployment's
``rollout-on-promotion`` trigger), as in production. Afterwards each host's home holds only its logs and PID
files, and S3 holds the artifacts, features, prediction log and reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import optuna
import pandas as pd
import pytest

from examples.features_walkthrough import activity, define
from examples.fraud_detection import INPUTS, MODEL, POLICY, REVIEWS, config
from examples.serving_helpers import Traffic, records, replay, reviewers
from examples.use_case_data import transactions
from tests.cluster.hosts import Cluster

DEPLOYMENTS = [
    "ingest-features", "materialize-features", "train-model", "promote-model", "canary-rollout",
    "check-drift", "bias-check", "governance-report",
]  # fmt: skip
#: The canary's defaults in this test: two short steps (the deployment's own run 60 s each).
ROLLOUT = {
    "steps": [50, 100],
    "step_seconds": 2,
    "min_requests": 10,
    "max_p99_ratio": 5.0,
    "poll_seconds": 0.5,
}
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
]


@pytest.fixture
def laptop(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """This process, configured as a user's machine that talks to the cluster (its own empty home)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    cluster.deploy(DEPLOYMENTS)
    for key, value in cluster.shared_env().items():
        monkeypatch.setenv(key, value)
    with temporary_settings({PREFECT_API_URL: cluster.prefect_api}):
        try:
            yield cluster
        finally:
            forget_connections()


def forget_connections() -> None:
    """Let go of what this process keeps per address, so later tests reach their own servers.

    Prefect's events and log workers and fsspec's S3 filesystems are cached per
    process without the address in the key: kept, they would send the rest of
    the session's events to the cluster's Prefect server and its S3 requests
    to the cluster's object store, both stopped after this module.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from s3fs import S3FileSystem

    EventsWorker.drain_all(at_exit=False)  # sends what is queued (the cluster is still up), then stops
    APILogWorker.drain_all(at_exit=False)
    S3FileSystem.clear_instance_cache()


def _run(name: str, parameters: dict[str, Any], timeout: float = 600) -> Any:
    """Run deployment ``name`` on the cluster's worker and return its result (the run must complete).

    A run that pauses (``promote-model`` waiting for approvals) is followed until it ends.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    flow_run = run_deployment(f"{name}/{name}", parameters=parameters, timeout=timeout, poll_interval=1)
    state = flow_run.state
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while state is not None and not state.is_final() and time.monotonic() < deadline:
            time.sleep(1)
            state = client.read_flow_run(flow_run.id).state
    assert state is not None and state.is_completed(), (name, state)
    return state.result()


def _set_defaults(name: str, parameters: dict[str, Any]) -> None:
    """Give deployment ``name`` these default parameters (runs its triggers start use them too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{name}/{name}")
        client.update_deployment(deployment.id, DeploymentUpdate(parameters=parameters))


def _triggered(name: str, expected: dict[str, Any], timeout: float = 600) -> Any:
    """The result of the run of deployment ``name`` with ``expected`` parameters that a trigger started."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )
            # a rendered template may arrive as a number: compare as text
            mine = [r for r in runs if all(str(r.parameters.get(k)) == str(v) for k, v in expected.items())]
            if mine and mine[0].state is not None and mine[0].state.is_final():
                assert len(mine) == 1, [r.parameters for r in mine]
                assert mine[0].state.is_completed(), mine[0].state
                return mine[0].state.result()
            time.sleep(1)
    raise AssertionError(f"no {name} run with {expected} ended within {timeout:g} s")


def _upload(frame: pd.DataFrame, url: str) -> str:
    import fsspec

    with fsspec.open(url, "wb") as handle:
        frame.to_csv(handle, index=False)
    return url


def test_the_fraud_use_case_runs_across_hosts_with_nothing_on_a_shared_disk(laptop: Cluster) -> None:
    from storage.features.store import FeatureStore
    from storage.objectstore import Place
    from storage.registry.approvals import ApprovalStore
    from storage.registry.core import Registry
    from tasks.training.tuning import WORKER_ATTR, open_storage

    cluster = laptop
    data = f"{cluster.storage_url}/data"

    # features: defined here, the batch in S3, ingested and materialized by the worker
    store = FeatureStore.from_settings()
    define(store)
    store.close()
    batch = _upload(activity(), f"{data}/card_activity.csv")
    ingested = _run("ingest-features", {"group": "card_activity", "path": batch})
    materialized = _run("materialize-features", {"groups": ["card_activity"]})
    assert ingested["rows"] > 0 and materialized["card_activity"]["rows"] > 0

    # training: the data in S3, the tuned model's trials on both Dask workers
    train = _upload(transactions(4_000, seed=11), f"{data}/transactions.csv")
    holdout = _upload(transactions(20_000, seed=12), f"{data}/holdout.csv")
    baseline = _run("train-model", {"config": config(train, tuned=False)})  # type: ignore[arg-type]
    tuned = _run("train-model", {"config": config(train, tuned=True)})  # type: ignore[arg-type]
    study_storage = open_storage()
    (summary,) = [s for s in optuna.get_all_study_summaries(study_storage) if s.n_trials == 8]
    trials = optuna.load_study(study_name=summary.study_name, storage=study_storage).get_trials()
    assert len({t.user_attrs.get(WORKER_ATTR) for t in trials}) == 2, [t.user_attrs for t in trials]

    # serving: the baseline behind the endpoint, under live traffic from here
    created = _run("canary-rollout", {"endpoint": MODEL, "model": MODEL, "version": str(baseline["version"])})
    assert created["status"] == "created", created
    _set_defaults("canary-rollout", ROLLOUT)
    traffic = Traffic(cluster.serve_url, MODEL, records(transactions(400, seed=13), INPUTS), delay_s=0.005)
    traffic.start()
    try:
        # approvals: the promote-model flow waits on the worker while two reviewers approve from here;
        # the promotion's event makes the Prefect server start the canary of the tuned version
        registry = Registry.from_settings()
        registry.transition_stage(MODEL, tuned["version"], "staging", reason="tuned beat the baseline")
        thread = reviewers(ApprovalStore(registry), MODEL, tuned["version"], REVIEWS)
        promoted = _run("promote-model", {
            "model": MODEL, "version": str(tuned["version"]), "target_stage": "production",
            "requested_by": "data-scientist", "policy": POLICY.model_dump(), "poll_interval_seconds": 1,
        })  # fmt: skip
        thread.join(60)
        assert promoted["status"] == "promoted", promoted
        assert registry.get_version(MODEL, "champion").number == tuned["version"]
        rollout = _triggered("canary-rollout", {"version": str(tuned["version"])})
    finally:
        traffic.stop()
    assert rollout["status"] == "completed", rollout
    assert traffic.sent > 0 and traffic.failed == 0, (traffic.sent, traffic.failed)

    # monitoring and governance: a drifted window, bias on the holdout, the report in S3
    drifted = records(transactions(600, seed=14, amount_shift=1.5), INPUTS)
    replay(cluster.serve_url, MODEL, drifted, range(len(drifted)))
    drift = _run("check-drift", {"model": MODEL, "version": str(tuned["version"]), "window_hours": 1})
    assert "amount" in drift["drifted_columns"], drift
    bias = _run("bias-check", {
        "model": MODEL, "version": str(tuned["version"]), "path": holdout, "label_column": "is_fraud",
        "protected_columns": ["age_group"], "min_group_size": 50,
    })  # fmt: skip
    assert "passed" in bias
    report = _run("governance-report", {"model": MODEL, "version": str(tuned["version"])})
    assert report["json"].startswith(cluster.storage_url), report

    # nothing on a shared disk: homes hold logs and PIDs only, S3 holds the platform's files
    stored = {h.name: h.stored_files() for h in cluster.hosts.values()}
    assert all(files == [] for files in stored.values()), stored
    place = Place(cluster.storage_url)
    for part in ("artifacts", "features", "predictions", "reports"):
        assert place.glob(part, "**"), f"nothing under {cluster.storage_url}/{part}"
