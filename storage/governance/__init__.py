"""Governance evidence: lineage, stored reports, attestations and erasure.

Registered datasets and each version's lineage, evidence reports (bias,
compliance, drift) that gates and audits read, attestations a named person
vouches for, and the right to erasure with its proof.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import storage.governance
    >>> 'LineageStore' in storage.governance.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.governance.attestations import Attestation, AttestationStore
    from storage.governance.erasure import ErasureResult, erase_entity, verify_erased
    from storage.governance.lineage import DataAsset, LineageStore
    from storage.governance.reports import ReportStore, StoredReport

_EXPORTS = {
    "LineageStore": "storage.governance.lineage",
    "DataAsset": "storage.governance.lineage",
    "ReportStore": "storage.governance.reports",
    "StoredReport": "storage.governance.reports",
    "AttestationStore": "storage.governance.attestations",
    "Attestation": "storage.governance.attestations",
    "erase_entity": "storage.governance.erasure",
    "verify_erased": "storage.governance.erasure",
    "ErasureResult": "storage.governance.erasure",
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
