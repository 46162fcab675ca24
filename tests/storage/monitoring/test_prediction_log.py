"""The prediction log's format, reads by model and time, atomic appends, erasure by entity (folder and S3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from blocks.settings import MlopsSettings
from storage.errors import ValidationError
from storage.monitoring.prediction_log import COLUMNS, SCHEMA, PredictionLog, canonical_entity_key


def _rec(i: int, *, model: str = "fraud", card: int | None = 1, day: int = 1, **extra: object) -> dict:
    return {
        "request_id": f"r{i}",
        "model": model,
        "version": 2,
        "ts": datetime(2026, 3, day, 12, i % 60, tzinfo=UTC),
        "entity_key": {"card_id": card} if card is not None else None,
        "features": {"amount": float(i)},
        "prediction": {"score": i / 10},
        "latency_ms": 1.5,
        **extra,
    }


@pytest.fixture(params=["local", "s3"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> PredictionLog:
    if request.param == "s3":
        return PredictionLog(request.getfixturevalue("s3_url") + "/predictions")
    return PredictionLog(tmp_path / "predictions")


def _leftovers(log: PredictionLog) -> list[str]:
    return [p for p in log.place.glob("**") if p.endswith(".tmp")]


def test_files_follow_the_documented_layout_and_schema(log: PredictionLog) -> None:
    written = log.append([_rec(1), _rec(2, day=2), _rec(3, model="churn")])
    rel = sorted(p.removeprefix(log.place.root + "/").rsplit("/", 1)[0] for p in written)
    assert rel == [
        "model=churn/date=2026-03-01",
        "model=fraud/date=2026-03-01",
        "model=fraud/date=2026-03-02",
    ]
    assert all(p.rsplit("/", 1)[1].startswith("part-") and p.endswith(".parquet") for p in written)
    schema = log.place.read_table(written[0]).schema
    assert schema.names == list(COLUMNS) and schema.equals(SCHEMA)
    assert sorted(log.files()) == sorted(log.place.uri(p) for p in written)
    assert _leftovers(log) == []


def test_read_filters_by_model_and_half_open_time_window(log: PredictionLog) -> None:
    log.append([_rec(1), _rec(2, day=2), _rec(3, model="churn"), _rec(4, day=3, status="error")])
    everything = log.read()
    assert list(everything.columns) == list(COLUMNS) and len(everything) == 4
    fraud = log.read(model="fraud")
    assert fraud["request_id"].tolist() == ["r1", "r2", "r4"]
    window = log.read(model="fraud", start=datetime(2026, 3, 2), end=datetime(2026, 3, 3, 12, 4, tzinfo=UTC))
    assert window["request_id"].tolist() == ["r2"]  # end is exclusive, naive start is UTC
    row = fraud.iloc[0]
    assert row["entity_key"] == "card_id=1" and row["features"] == '{"amount":1.0}'
    assert row["version"] == 2 and row["status"] == "ok" and str(row["ts"].tz) == "UTC"
    assert log.read(model="nobody").empty and list(log.read(model="nobody").columns) == list(COLUMNS)


def test_bad_records_are_refused_whole(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    with pytest.raises(ValidationError, match="record 1: status 'maybe'"):
        log.append([_rec(1), _rec(2, status="maybe")])
    with pytest.raises(ValidationError, match="record 0: version 0"):
        log.append([_rec(1, version=0)])
    with pytest.raises(ValidationError, match="record 0: field 'request_id' is required"):
        log.append([{**_rec(1), "request_id": None}])
    with pytest.raises(ValidationError, match=r"unknown fields \['score'\]"):
        log.append([_rec(1, score=3)])
    with pytest.raises(ValidationError, match="latency_ms -1"):
        log.append([_rec(1, latency_ms=-1)])
    with pytest.raises(ValidationError, match="features 'nope' is not valid JSON"):
        log.append([_rec(1, features="nope")])
    with pytest.raises(ValidationError, match="cannot contain '/'"):
        log.append([_rec(1, model="team/fraud")])
    assert log.files() == []


def test_canonical_entity_keys() -> None:
    assert canonical_entity_key({"zone": "b", "city_id": 3.0}) == "city_id=3,zone=b"
    assert canonical_entity_key(" card_id = 7 ") == "card_id=7"
    for bad, match in [("card_id", "malformed"), ({}, "at least one"), ({"a": "x,y"}, "without ','")]:
        with pytest.raises(ValidationError, match=match):
            canonical_entity_key(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a valid identifier"):
        canonical_entity_key({"bad key": 1})


def test_erase_rewrites_only_affected_files(log: PredictionLog) -> None:
    log.append([_rec(1, card=1), _rec(2, card=2), _rec(3, card=None)])
    only_one = log.append([_rec(4, card=1, day=5)])[0]
    untouched = log.append([_rec(5, card=2, day=6)])[0]
    before = log.place.stamp(untouched)
    assert log.count({"card_id": 1}) == 2 and log.count("card_id=2") == 2
    assert log.erase("card_id=1") == 2
    assert log.count("card_id=1") == 0 and not log.place.exists(only_one)
    assert log.place.stamp(untouched) == before
    assert log.read()["request_id"].tolist() == ["r2", "r3", "r5"]  # other entities and null keys kept
    assert log.erase({"card_id": 1}) == 0
    assert _leftovers(log) == []
    assert log.place.glob("model=fraud", "date=2026-03-05", "*") == []  # emptied: nothing left behind


def test_root_comes_from_settings(tmp_path: Path) -> None:
    assert MlopsSettings(home=tmp_path).resolved_prediction_log_root() == str(tmp_path / "predictions")
    custom = MlopsSettings(home=tmp_path, prediction_log_root=str(tmp_path / "elsewhere"))
    assert PredictionLog.from_settings(custom).root == str(tmp_path / "elsewhere")
    shared = MlopsSettings(home=tmp_path, storage_url="s3://bucket/mlops")
    assert PredictionLog.from_settings(shared).root == "s3://bucket/mlops/predictions"


def test_a_log_on_s3_reads_and_writes_only_the_object_store(s3_url: str, tmp_path: Path) -> None:
    log = PredictionLog.from_settings(MlopsSettings(home=tmp_path, storage_url=s3_url))
    log.append([_rec(1), _rec(2, card=2)])
    assert log.files() and all(f.startswith(s3_url + "/predictions/") for f in log.files())
    assert PredictionLog(s3_url + "/predictions").read()["request_id"].tolist() == ["r1", "r2"]
    assert log.verify() == [] and log.count("card_id=2") == 1
    assert not any(tmp_path.rglob("*.parquet"))
