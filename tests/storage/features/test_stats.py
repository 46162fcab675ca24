"""Feature statistics: exact values, frozen bin edges, stored reference and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blocks.settings import MlopsSettings
from storage.features.stats import describe, load_stats
from storage.features.store import FeatureStore

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def test_numeric_statistics_match_numpy() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(5, 2, size=1000)
    series = pd.Series(np.concatenate([values, [np.nan] * 10]))
    stats = describe(series, "float", bins=8)
    assert (stats["count"], stats["nulls"]) == (1000, 10)
    assert stats["null_share"] == pytest.approx(10 / 1010)
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["std"] == pytest.approx(values.std(ddof=1))
    assert (stats["min"], stats["max"]) == (pytest.approx(values.min()), pytest.approx(values.max()))
    for p in (25, 50, 75, 90, 95, 99):
        assert stats[f"p{p}"] == pytest.approx(np.percentile(values, p))
    assert sum(stats["histogram"]["counts"]) == 1000
    assert len(stats["histogram"]["edges"]) == 9


def test_later_windows_reuse_the_reference_edges() -> None:
    ref = describe(pd.Series(np.arange(100, dtype=float)), "float", bins=4)
    shifted = describe(pd.Series(np.arange(50, 150, dtype=float)), "float", reference=ref)
    assert shifted["histogram"]["edges"] == ref["histogram"]["edges"]
    assert shifted["histogram"]["counts"] == [0, 0, 25, 25]
    assert shifted["histogram"]["above"] == 50 and shifted["histogram"]["below"] == 0


def test_categorical_statistics_freeze_categories() -> None:
    ref = describe(pd.Series(["a", "b", "b", None]), "string")
    assert ref["categories"] == {"values": ["b", "a"], "counts": [2, 1], "other": 0}
    later = describe(pd.Series(["a", "c", "c"]), "string", reference=ref)
    assert later["categories"] == {"values": ["b", "a"], "counts": [0, 1], "other": 2}
    assert describe(pd.Series([True, False, True]), "bool")["distinct"] == 2


def test_store_saves_reference_then_windows(tmp_path: Path) -> None:
    store = FeatureStore.from_settings(MlopsSettings(home=tmp_path / "home"))
    d = store.definitions
    d.create_entity("driver", join_keys=["driver_id"])
    d.create_group("trips", entity="driver", event_time_column="ts")
    d.register_feature("trips", "fare", "float")
    d.register_feature("trips", "city", "string")
    ts = [T0 + timedelta(hours=i) for i in range(48)]
    store.ingest(
        "trips",
        pd.DataFrame(
            {"driver_id": np.arange(48) % 3, "ts": ts, "fare": np.arange(48.0), "city": ["x", "y"] * 24}
        ),
    )
    ref = store.compute_statistics("trips", T0, T0 + timedelta(days=1), reference=True, bins=4)
    assert ref["fare"]["histogram"]["edges"] == [0.0, 5.75, 11.5, 17.25, 23.0]
    window = store.compute_statistics("trips", T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert window["fare"]["histogram"]["edges"] == ref["fare"]["histogram"]["edges"]
    assert window["fare"]["histogram"]["above"] == 24
    assert window["city"]["categories"]["values"] == ref["city"]["categories"]["values"]
    stored = load_stats(store.db, "trips", "fare", kind="window")
    assert stored is not None and stored["stats"]["count"] == 24
    assert stored["window_start"] == T0 + timedelta(days=1)
    store.close()
