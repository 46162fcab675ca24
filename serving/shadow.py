"""Shadow reports: how often a shadow version disagrees with the live answer.

The server logs the live prediction with the variant that answered and each
mirrored shadow prediction with ``variant = "shadow:<model>:<version ref>"``
under the same request id (``<id>:<row>`` per row). Pairing the two by request
id gives the disagreement rate: outputs that differ (classifiers by label,
numbers by more than ``tolerance``).

Example:
    >>> import pandas as pd
    >>> log = pd.DataFrame({
    ...     "request_id": ["r1", "r1", "r2", "r2", "r3"],
    ...     "endpoint": ["fraud"] * 5,
    ...     "variant": ["a", "shadow:fraud:2", "a", "shadow:fraud:2", "a"],
    ...     "prediction": ["[1]", "[1]", "[0]", "[1]", "[0]"],
    ...     "status": ["ok"] * 5, "latency_ms": [1.0] * 5})
    >>> r = shadow_report(log, endpoint="fraud")[0]
    >>> r.shadow, r.pairs, r.disagreements, r.disagreement_rate
    ('shadow:fraud:2', 2, 1, 0.5)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SHADOW_PREFIX", "ShadowReport", "outputs_disagree", "shadow_report"]

SHADOW_PREFIX = "shadow:"


@dataclass(frozen=True)
class ShadowReport:
    """One shadow target against the live answers of an endpoint."""

    endpoint: str
    shadow: str
    pairs: int
    disagreements: int
    disagreement_rate: float
    mean_abs_difference: float | None
    shadow_errors: int
    shadow_p50_ms: float | None
    shadow_p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _flatten(value[k])]
    if isinstance(value, list | tuple):
        return [x for item in value for x in _flatten(item)]
    return [value]


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def outputs_disagree(live: Any, shadow: Any, *, tolerance: float = 1e-6) -> tuple[bool, float | None]:
    """Whether two outputs differ, and their largest absolute numeric difference (None if not numeric).

    Classifier rows as the server logs them (``{"label": L, "score": p}``) differ
    when their labels differ; the gap is the difference of their scores. Other
    outputs differ when any number is further apart than ``tolerance`` or any
    other value is unequal.

    Example:
        >>> outputs_disagree('{"label": 1, "score": 0.9}', '{"label": 1, "score": 0.7}')[0]
        False
        >>> outputs_disagree("[0.5, 0.25]", "[0.5, 0.2500001]")[0]
        False
        >>> outputs_disagree('{"label": "cat"}', '{"label": "dog"}')
        (True, None)
    """
    live, shadow = _parsed(live), _parsed(shadow)
    if isinstance(live, dict) and isinstance(shadow, dict) and "label" in live and "label" in shadow:
        # a classifier's row: the labels decide, the scores measure how far apart they are
        ls, ss = _number(live.get("score")), _number(shadow.get("score"))
        gap = abs(ls - ss) if ls is not None and ss is not None else None
        return live["label"] != shadow["label"], gap
    a, b = _flatten(live), _flatten(shadow)
    if len(a) != len(b):
        return True, None
    worst: float | None = None
    differ = False
    for x, y in zip(a, b, strict=True):
        nx, ny = _number(x), _number(y)
        if nx is not None and ny is not None:
            gap = abs(nx - ny) if not (math.isnan(nx) and math.isnan(ny)) else 0.0
            worst = gap if worst is None else max(worst, gap)
            differ |= not gap <= tolerance
        else:
            differ |= x != y
    return differ, worst


def shadow_report(predictions: Any, *, endpoint: str, tolerance: float = 1e-6) -> list[ShadowReport]:
    """Disagreement of every shadow target of ``endpoint`` with the live answers, from the prediction log.

    Args:
        predictions: The prediction log as a frame (``request_id``, ``endpoint``,
            ``variant``, ``prediction``, ``status``, ``latency_ms``).
        endpoint: The endpoint to report on.
        tolerance: Numeric outputs closer than this agree.
    """
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(predictions)
    if frame.empty:
        return []
    frame = frame[frame["endpoint"] == endpoint]
    variant = frame["variant"].fillna("")
    is_shadow = variant.str.startswith(SHADOW_PREFIX)
    live = frame[~is_shadow & (frame["status"] == "ok")].drop_duplicates("request_id")
    live_by_id = dict(zip(live["request_id"], live["prediction"], strict=True))
    reports = []
    for name, rows in frame[is_shadow].groupby(variant[is_shadow], sort=True):
        errors = int((rows["status"] != "ok").sum())
        ok = rows[rows["status"] == "ok"]
        pairs = disagreements = 0
        gaps: list[float] = []
        for request_id, output in zip(ok["request_id"], ok["prediction"], strict=True):
            if request_id not in live_by_id:
                continue
            pairs += 1
            differ, gap = outputs_disagree(live_by_id[request_id], output, tolerance=tolerance)
            disagreements += differ
            if gap is not None:
                gaps.append(gap)
        latency = rows["latency_ms"].to_numpy(dtype=float) if "latency_ms" in rows else np.array([])
        reports.append(
            ShadowReport(
                endpoint=endpoint,
                shadow=str(name),
                pairs=pairs,
                disagreements=disagreements,
                disagreement_rate=disagreements / pairs if pairs else 0.0,
                mean_abs_difference=float(np.mean(gaps)) if gaps else None,
                shadow_errors=errors,
                shadow_p50_ms=float(np.quantile(latency, 0.5)) if len(latency) else None,
                shadow_p99_ms=float(np.quantile(latency, 0.99)) if len(latency) else None,
            )
        )
    return reports
