"""Checks on user input shared by the stores; each error names the field and value.

Example:
    >>> check_metrics({"auc": 0.9, "n": 3})
    {'auc': 0.9, 'n': 3.0}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from storage.errors import ValidationError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"{kind} name {name!r} is invalid: use letters, digits, '_', '-', '.', '/' (max 255)"
        )
    return name


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    checked: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"metric name {key!r} must be a non-empty string")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"metric {key!r} has value {value!r}, which is not a number")
        if not math.isfinite(value):
            raise ValidationError(f"metric {key!r} has value {value!r}, which is not finite")
        checked[key] = float(value)
    return checked


def check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key or len(key) > 255:
            raise ValidationError(f"tag name {key!r} must be a non-empty string of at most 255 characters")
        checked[key] = str(value)
    return checked


def check_json(field: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be JSON-serialisable: {exc}") from None
    return value
