"""Serving endpoints: variants, traffic policies, events and traffic statistics.

An endpoint is the name clients call; its variants (model, version
reference, weight) and policy (A/B, canary, shadow, blue-green) live in the
metadata database with an audited event history; routers flush per-variant
request, error and latency counters here (``traffic``).

:class:`EndpointStore` (``store``) is put together from the records and their
checks (``records``), reads and variant changes (``base``), policy changes
(``policies``) and traffic counters and outcomes (``measurements``).

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import storage.endpoints
    >>> 'EndpointStore' in storage.endpoints.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.endpoints.records import CanaryPlan, Endpoint, EndpointEvent, Variant, VariantSpec
    from storage.endpoints.store import EndpointStore
    from storage.endpoints.traffic import LatencyHistogram, StatsRow, VariantStats

_EXPORTS = {
    "EndpointStore": "storage.endpoints.store",
    "Endpoint": "storage.endpoints.records",
    "Variant": "storage.endpoints.records",
    "VariantSpec": "storage.endpoints.records",
    "CanaryPlan": "storage.endpoints.records",
    "EndpointEvent": "storage.endpoints.records",
    "LatencyHistogram": "storage.endpoints.traffic",
    "StatsRow": "storage.endpoints.traffic",
    "VariantStats": "storage.endpoints.traffic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
