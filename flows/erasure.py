"""The ``erase-entity`` flow: the right to erasure as a Prefect run.

Thin wiring of :mod:`tasks.governance.erasure`: erase the entity from the offline and
online feature stores and the prediction log (verified, recorded, audited),
then publish the counts. The run fails when anything remains.

Note that Prefect keeps a run's parameters: start it with the entity's key
values only where Prefect's database may hold them (``mlops erase`` runs the
same steps without Prefect).

Example:
    >>> from flows.erasure import erase_entity_flow
    >>> erase_entity_flow.name
    'erase-entity'
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.governance.erasure import erase_entity_everywhere, publish_erasure


@flow(name="erase-entity")
def erase_entity_flow(
    entity: dict[str, Any], requested_by: str | None = None, reason: str = ""
) -> dict[str, Any]:
    """Erase ``entity`` (join-key values, e.g. ``{"card_id": 1}``) everywhere and publish the result."""
    result = erase_entity_everywhere(entity, requested_by, reason)
    publish_erasure(result)
    return result
