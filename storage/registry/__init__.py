"""The model registry: models, versions, stages, aliases, approvals, comparison, file layout.

Models and their numbered versions (with a semantic version), stage moves
and aliases with their history, tags and metadata, comparison and winner
selection, N-of-M approval requests, and how a version's files are laid out
(``model_format``) so that training and serving agree.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import storage.registry
    >>> 'Registry' in storage.registry.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.registry.approvals import ApprovalRequest, ApprovalStore, ReviewDecision
    from storage.registry.compare import Comparison, compare_versions, pick_winner
    from storage.registry.core import Registry
    from storage.registry.reads import MetricFilter
    from storage.registry.records import (
        STAGES,
        AliasMove,
        Artifact,
        Model,
        ModelVersion,
        Page,
        StageMove,
        VerifyReport,
    )
    from storage.registry.semver import SemVer

_EXPORTS = {
    "Registry": "storage.registry.core",
    "Model": "storage.registry.records",
    "ModelVersion": "storage.registry.records",
    "Artifact": "storage.registry.records",
    "AliasMove": "storage.registry.records",
    "StageMove": "storage.registry.records",
    "Page": "storage.registry.records",
    "VerifyReport": "storage.registry.records",
    "STAGES": "storage.registry.records",
    "SemVer": "storage.registry.semver",
    "Comparison": "storage.registry.compare",
    "compare_versions": "storage.registry.compare",
    "pick_winner": "storage.registry.compare",
    "ApprovalStore": "storage.registry.approvals",
    "ApprovalRequest": "storage.registry.approvals",
    "ReviewDecision": "storage.registry.approvals",
    "MetricFilter": "storage.registry.reads",
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
