"""Rollouts driven through the model server's admin API: canary steps and blue-green switches.

The control plane never imports the data plane: these tasks call the
server's ``/admin`` API over HTTP.

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import tasks.rollout
    >>> 'AdminAPI' in tasks.rollout.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.rollout.steps import AdminAPI, analyze_canary, rollback_canary, start_canary, switch_blue_green

_EXPORTS = {
    "AdminAPI": "tasks.rollout.steps",
    "start_canary": "tasks.rollout.steps",
    "analyze_canary": "tasks.rollout.steps",
    "rollback_canary": "tasks.rollout.steps",
    "switch_blue_green": "tasks.rollout.steps",
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
