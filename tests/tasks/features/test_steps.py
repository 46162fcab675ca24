"""Feature store tasks: the training hook, lineage, file reading (called without a flow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from storage.errors import ValidationError
from storage.features.store import FeatureStore, read_table, training_frame
from tasks.features.steps import build_training_set, load_training_set, record_feature_lineage

T0 = datetime(2026, 8, 1, tzinfo=UTC)


@pytest.fixture
def store() -> FeatureStore:
    s = FeatureStore.from_settings()  # MLOPS_HOME is per test (tests/conftest.py)
    d = s.definitions
    d.create_entity("driver", join_keys=["driver_id"])
    d.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=7200, source="kafka://trips")
    d.register_feature("trips", "fare", "float")
    d.register_feature("trips", "rides", "int")
    s.ingest(
        "trips",
        pd.DataFrame(
            {
                "driver_id": [1, 1, 2],
                "ts": [T0, T0 + timedelta(hours=1), T0],
                "fare": [5.0, 6.0, 7.0],
                "rides": [1, 2, 3],
            }
        ),
    )
    return s


def test_training_set_is_point_in_time_and_reports_feature_versions(
    store: FeatureStore, tmp_path: Path
) -> None:
    entities = pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "label": [0, 1, 1],
            "event_timestamp": [T0 + timedelta(minutes=30), T0 + timedelta(hours=2), T0 + timedelta(hours=3)],
        }
    )
    source = tmp_path / "entities.parquet"
    entities.to_parquet(source)
    out = load_training_set(source, ["trips:*"], output_path=tmp_path / "sets" / "train.parquet", store=store)
    assert out["frame"]["fare"].tolist() == pytest.approx([5.0, 6.0, float("nan")], nan_ok=True)
    assert out["feature_refs"] == ["trips:fare@1", "trips:rides@1"]
    assert out["null_share"]["fare"] == pytest.approx(1 / 3)
    assert pd.read_parquet(out["path"])["label"].tolist() == [0, 1, 1]
    frame, refs = training_frame(store, entities, ["trips:fare"])
    assert refs == ["trips:fare@1"] and len(frame) == 3


def test_build_training_set_task_and_lineage(store: FeatureStore, tmp_path: Path) -> None:
    source = tmp_path / "entities.csv"
    pd.DataFrame({"driver_id": [2], "event_timestamp": [T0.isoformat()]}).to_csv(source, index=False)
    out = build_training_set.fn(str(source), ["trips:fare"], str(tmp_path / "t.parquet"))
    assert out["feature_refs"] == ["trips:fare@1"] and "frame" not in out
    assert record_feature_lineage.fn(out["feature_refs"], "eta", 4) == ["trips:fare@1"]
    assert store.definitions.lineage("trips")["features"] == {"trips:fare@1": ["eta/4"]}


def test_read_table_rejects_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        read_table(tmp_path / "missing.parquet")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(ValidationError, match=r"x\.txt.*expected \.csv, \.parquet"):
        read_table(tmp_path / "x.txt")
