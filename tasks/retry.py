"""Retry rules and the failure-injection hook shared by the training stages.

Every training stage is a Prefect task that retries transient failures but
never bad input: :func:`retry_unless_bad_input` is their ``retry_condition_fn``.

Test hook: ``MLOPS_TRAINING_FAIL_STAGE=<stage>`` makes :func:`maybe_fail` raise
in that stage; with ``MLOPS_TRAINING_FAIL_ONCE=<path>`` it raises only while
``<path>`` does not exist (and creates it), a transient failure that a retry
gets past.

Example:
    >>> maybe_fail("train")  # not armed: nothing happens
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storage.errors import ValidationError

FAIL_STAGE_ENV = "MLOPS_TRAINING_FAIL_STAGE"
FAIL_ONCE_ENV = "MLOPS_TRAINING_FAIL_ONCE"


class InjectedFailure(RuntimeError):
    """Raised by :func:`maybe_fail` (the retry/resume test hook)."""


def maybe_fail(stage: str) -> None:
    """Raise when ``MLOPS_TRAINING_FAIL_STAGE`` names ``stage`` (see the module docstring)."""
    if os.environ.get(FAIL_STAGE_ENV) != stage:
        return
    marker = os.environ.get(FAIL_ONCE_ENV)
    if marker:
        if Path(marker).exists():
            return
        Path(marker).write_text(stage)
    raise InjectedFailure(f"injected failure in stage {stage!r} ({FAIL_STAGE_ENV})")


def retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry transient failures, never bad input (ValidationError)."""
    try:
        state.result(raise_on_failure=True)
    except ValidationError:
        return False
    except Exception:
        return True
    return True
