"""Feature store flows: ingest a batch, materialize to the online store, statistics.

Thin wiring of :mod:`tasks.features.steps`. ``feature_statistics`` is meant to run
on a schedule (a deployment in ``prefect.yaml``, e.g. hourly); by default it
covers the last ``window_hours`` for every group.

Example:
    >>> from flows.features import materialize_features
    >>> materialize_features.name
    'materialize-features'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow

from tasks.features.steps import (
    compute_feature_statistics,
    ingest_feature_batch,
    list_feature_groups,
    materialize_group,
    publish_statistics,
)


@flow(name="ingest-features")
def ingest_features(group: str, path: str) -> dict[str, Any]:
    """Validate and write one batch file into ``group``'s offline store."""
    return ingest_feature_batch(group, path)


@flow(name="materialize-features")
def materialize_features(
    groups: list[str] | None = None, start: datetime | None = None, end: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Materialize ``groups`` (default: all) from their last materialized time (or ``start``) to ``end``.

    Rerunning a window writes nothing new; the next run starts where this one ended.
    """
    return {group: materialize_group(group, start, end) for group in list_feature_groups(groups)}


@flow(name="feature-statistics")
def feature_statistics(
    groups: list[str] | None = None,
    window_hours: float = 24.0,
    end: datetime | None = None,
    reference: bool = False,
) -> dict[str, str]:
    """Compute, store and publish statistics for ``groups`` (default: all) over the last window.

    Returns the artifact key per group.
    """
    stop = end or datetime.now(UTC)
    start = stop - timedelta(hours=window_hours)
    return {
        group: publish_statistics(group, compute_feature_statistics(group, start, stop, reference))
        for group in list_feature_groups(groups)
    }


if __name__ == "__main__":
    # Serve the statistics flow on an hourly schedule (a deployment in prefect.yaml does the same).
    feature_statistics.serve(name="feature-statistics-hourly", cron="0 * * * *")
