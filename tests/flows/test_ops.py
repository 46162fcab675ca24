"""The cluster-check flow on the session's Dask cluster (flows/ops.py)."""

from __future__ import annotations

from typing import Any

import pytest

from flows.ops import cluster_check


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_cluster_check_reports_the_workers_that_ran_its_tasks(dask_cluster: Any) -> None:
    result = cluster_check(n_tasks=4, address=dask_cluster.scheduler_address)
    assert result["scheduler"] == dask_cluster.scheduler_address
    assert len(result["tasks"]) == 4
    assert set(result["workers"]) <= set(dask_cluster.scheduler_info["workers"])
    assert result["workers"], "no task reported a Dask worker"


@pytest.mark.usefixtures("prefect_harness")
def test_cluster_check_needs_a_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_DASK_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="MLOPS_DASK_ADDRESS"):
        cluster_check(n_tasks=1)
