"""Prefect tasks for the right to erasure.

The logic lives in :mod:`storage.governance.erasure`; these tasks open the stores from
the ``MLOPS_*`` settings, return plain dictionaries and publish a summary that
names places and counts only, never the entity's key values.

Example:
    >>> from tasks.governance.erasure import erase_entity_everywhere
    >>> erase_entity_everywhere.name
    'erase-entity-everywhere'
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from blocks.settings import get_settings
from storage.errors import IntegrityError
from storage.features.store import FeatureStore
from storage.governance.erasure import erase_entity, verify_erased
from storage.monitoring.prediction_log import PredictionLog


def run_erasure(keys: dict[str, Any], requested_by: str | None = None, reason: str = "") -> dict[str, Any]:
    """Erase the entity everywhere and record it; raise IntegrityError when something remains.

    The erasure is recorded (and audited) even when verification fails, so the
    attempt is on file; rerunning it is safe.
    """
    result = erase_entity(keys, requested_by=requested_by or get_settings().resolved_user(), reason=reason)
    if not result.verified:
        left = {place: n for place, n in result.remaining.items() if n}
        raise IntegrityError(f"erasure {result.id} left rows behind: {left}")
    return result.to_dict()


@task(name="erase-entity-everywhere", retries=2, retry_delay_seconds=5)
def erase_entity_everywhere(
    keys: dict[str, Any], requested_by: str | None = None, reason: str = ""
) -> dict[str, Any]:
    """Delete the entity from the feature stores and the prediction log; retried when rows remain."""
    return run_erasure(keys, requested_by, reason)


@task(name="verify-entity-erased")
def verify_entity_erased(keys: dict[str, Any]) -> dict[str, int]:
    """Rows of the entity left in each place (all zero after a successful erasure)."""
    store = FeatureStore.from_settings()
    try:
        return verify_erased(keys, store=store, log=PredictionLog.from_settings())
    finally:
        store.close()


@task(name="publish-erasure")
def publish_erasure(result: dict[str, Any]) -> str:
    """Publish the counts per place as a table artifact (``erasure-<id>``); no key values."""
    key = f"erasure-{result['id']}"
    rows = [
        {"place": place, "removed": n, "remaining": result["remaining"].get(place, 0)}
        for place, n in result["removed"].items()
    ]
    create_table_artifact(
        key=key, table=rows, description=f"Erasure {result['id']}: verified={result['verified']}"
    )
    return key
