"""Configuration: ``MLOPS_*`` settings, policies, and the Prefect Block types.

The Block types load on first use, so that importing the settings does not
import Prefect; ``prefect block register -m blocks`` still finds them all.
"""

from __future__ import annotations

import importlib
from typing import Any

from blocks.settings import MlopsSettings, get_settings

_BLOCK_TYPES = {
    "RegistryBlock": "blocks.registry",
    "ApprovalPolicyBlock": "blocks.approvals",
    "MonitoringConfigBlock": "blocks.monitoring",
    "SmtpNotificationBlock": "blocks.notifications",
}

__all__ = [
    "ApprovalPolicyBlock",
    "MlopsSettings",
    "MonitoringConfigBlock",
    "RegistryBlock",
    "SmtpNotificationBlock",
    "get_settings",
]


def __getattr__(name: str) -> Any:
    if name in _BLOCK_TYPES:
        return getattr(importlib.import_module(_BLOCK_TYPES[name]), name)
    raise AttributeError(f"module 'blocks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_BLOCK_TYPES])
