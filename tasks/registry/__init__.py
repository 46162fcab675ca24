"""Registry work as Prefect tasks: registration, stage moves, evidence gates, promotion.

``steps`` wraps the registry for flows, ``gates`` checks evidence before a
stage move goes to reviewers, and ``promotion`` runs the N-of-M review (the
typed Prefect UI form, recording decisions, applying the move).

Names are imported on first use, so importing the package stays cheap and no
import circle runs through it.

Example:
    >>> import tasks.registry
    >>> 'register_model_version' in tasks.registry.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.registry.gates import evaluate_gates
    from tasks.registry.promotion import ReviewInput, decide, resume_waiting_run
    from tasks.registry.steps import move_alias, register_model_version, transition_version_stage

_EXPORTS = {
    "register_model_version": "tasks.registry.steps",
    "transition_version_stage": "tasks.registry.steps",
    "move_alias": "tasks.registry.steps",
    "evaluate_gates": "tasks.registry.gates",
    "ReviewInput": "tasks.registry.promotion",
    "decide": "tasks.registry.promotion",
    "resume_waiting_run": "tasks.registry.promotion",
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
