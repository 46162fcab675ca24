"""Feature statistics with histogram bins frozen at a reference.

Numeric features (int, float) get count, nulls, null share, mean, std, min,
max, p25/p50/p75/p90/p95/p99 and a histogram; string and bool features get
count, nulls, distinct values and category counts. The first statistics saved
as the *reference* fix the histogram's bin edges (or the category list); later
windows are binned on those edges, with values outside them counted as
``below``/``above`` (or ``__other__``), so windows compare bin by bin.

Example:
    >>> import pandas as pd
    >>> from storage.features.stats import describe
    >>> ref = describe(pd.Series([1.0, 2.0, 3.0, 4.0, None]), "float", bins=3)
    >>> ref["count"], ref["nulls"], ref["histogram"]["edges"]
    (4, 1, [1.0, 2.0, 3.0, 4.0])
    >>> describe(pd.Series([0.0, 2.5, 9.0]), "float", reference=ref)["histogram"]["counts"]
    [0, 1, 0]
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from storage.db import Database
from storage.errors import NotFoundError
from storage.schema import feature_groups, feature_statistics, utcnow

PERCENTILES = (25, 50, 75, 90, 95, 99)
MAX_CATEGORIES = 20


def _num(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def describe(
    values: pd.Series, dtype: str, *, reference: Mapping[str, Any] | None = None, bins: int = 10
) -> dict[str, Any]:
    """Statistics of one feature's values; bins come from ``reference`` when given."""
    total = len(values)
    nulls = (
        int(values.isna().sum())
        if dtype not in ("array", "json")
        else int(values.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v))).sum())
    )
    out: dict[str, Any] = {
        "dtype": dtype,
        "count": total - nulls,
        "nulls": nulls,
        "null_share": nulls / total if total else 0.0,
    }
    if dtype in ("int", "float"):
        arr = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
        empty = arr.size == 0
        out.update(
            mean=None if empty else _num(arr.mean()),
            std=None if arr.size < 2 else _num(arr.std(ddof=1)),
            min=None if empty else _num(arr.min()),
            max=None if empty else _num(arr.max()),
        )
        for p in PERCENTILES:
            out[f"p{p}"] = None if empty else _num(np.percentile(arr, p))
        edges = list(reference["histogram"]["edges"]) if reference and reference.get("histogram") else None
        if edges is None:
            lo, hi = (0.0, 1.0) if empty else (float(arr.min()), float(arr.max()))
            if lo == hi:
                hi = lo + 1.0
            edges = np.linspace(lo, hi, bins + 1).tolist()
        counts, _ = np.histogram(arr[(arr >= edges[0]) & (arr <= edges[-1])], bins=np.asarray(edges))
        out["histogram"] = {
            "edges": edges,
            "counts": counts.astype(int).tolist(),
            "below": int((arr < edges[0]).sum()),
            "above": int((arr > edges[-1]).sum()),
        }
    elif dtype in ("string", "bool"):
        present = values.dropna().astype(str)
        counts_all = present.value_counts()
        cats = (
            list(reference["categories"]["values"])
            if reference and reference.get("categories")
            else counts_all.index[:MAX_CATEGORIES].tolist()
        )
        out["distinct"] = int(counts_all.size)
        out["categories"] = {
            "values": cats,
            "counts": [int(counts_all.get(c, 0)) for c in cats],
            "other": int(counts_all.drop(labels=cats, errors="ignore").sum()),
        }
    return out


def _group_id(conn: Any, group: str) -> int:
    gid = conn.execute(sa.select(feature_groups.c.id).where(feature_groups.c.name == group)).scalar()
    if gid is None:
        raise NotFoundError(f"feature group {group!r} does not exist")
    return int(gid)


def save_stats(
    db: Database,
    group: str,
    stats: Mapping[str, Mapping[str, Any]],
    *,
    kind: str,
    window_start: datetime | None,
    window_end: datetime | None,
    flow_run_id: str | None = None,
) -> None:
    """Store one set of statistics per feature (``kind``: ``reference`` or ``window``)."""
    with db.write() as conn:
        gid = _group_id(conn, group)
        now = utcnow()
        for feature, values in stats.items():
            conn.execute(
                feature_statistics.insert().values(
                    group_id=gid,
                    feature=feature,
                    kind=kind,
                    window_start=window_start,
                    window_end=window_end,
                    stats=dict(values),
                    flow_run_id=flow_run_id,
                    created_at=now,
                )
            )


def load_stats(db: Database, group: str, feature: str, *, kind: str | None = None) -> dict[str, Any] | None:
    """The newest statistics of a feature (of ``kind`` when given), None when there are none."""
    with db.read() as conn:
        gid = _group_id(conn, group)
        q = sa.select(feature_statistics).where(
            feature_statistics.c.group_id == gid, feature_statistics.c.feature == feature
        )
        if kind is not None:
            q = q.where(feature_statistics.c.kind == kind)
        row = conn.execute(q.order_by(feature_statistics.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {
        "feature": row.feature,
        "kind": row.kind,
        "window_start": row.window_start,
        "window_end": row.window_end,
        "stats": row.stats,
        "created_at": row.created_at,
    }


def statistics_table(stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per feature for a table artifact.

    Example:
        >>> statistics_table({"fare": {"dtype": "float", "count": 2, "nulls": 0, "null_share": 0.0,
        ...                            "mean": 1.5}})[0]["mean"]
        1.5
    """
    cols = ("dtype", "count", "nulls", "null_share", "mean", "std", "min", "p50", "p95", "max", "distinct")
    return [{"feature": name, **{c: s.get(c) for c in cols}} for name, s in stats.items()]
