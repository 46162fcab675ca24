"""Right to erasure on SQLite/PostgreSQL metadata and SQLite/Redis online stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from storage.audit import AuditLog
from storage.db import Database
from storage.errors import NotFoundError, ValidationError
from storage.features.online import entity_key
from storage.features.store import FeatureStore
from storage.governance.erasure import erase_entity, get_erasure, list_erasures, verify_erased
from storage.monitoring.prediction_log import PredictionLog
from storage.schema import erasures

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(params=["local", "s3"])
def files_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the offline store and the prediction log keep their files: a folder, or a real S3 API."""
    if request.param == "local":
        return str(tmp_path)
    return str(request.getfixturevalue("s3_url"))


@pytest.fixture
def store(db: Database, files_root: str, online_url: str) -> Iterator[FeatureStore]:
    s = FeatureStore(db, f"{files_root}/features", online_url, actor="tester")
    d = s.definitions
    d.create_entity("card", join_keys=["card_id"])
    d.create_group("card_stats", entity="card", event_time_column="ts")
    d.register_feature("card_stats", "spend", "float")
    d.create_entity("card_merchant", join_keys=["card_id", "merchant"])
    d.create_group("pair_stats", entity="card_merchant", event_time_column="ts")
    d.register_feature("pair_stats", "visits", "int")
    days = pd.to_datetime(["2026-05-30", "2026-05-31", "2026-05-31", "2026-05-31"], utc=True)
    s.ingest("card_stats", pd.DataFrame({"card_id": [1, 1, 2, 3], "ts": days, "spend": [1.0, 2.0, 3.0, 4.0]}))
    s.ingest(
        "card_stats", pd.DataFrame({"card_id": [1], "ts": days[:1], "spend": [9.0]})
    )  # a file of its own
    s.ingest(
        "pair_stats",
        pd.DataFrame(
            {"card_id": [1, 1, 2], "merchant": ["m1", "m2", "m1"], "ts": days[1:], "visits": [1, 2, 3]}
        ),
    )
    for group in ("card_stats", "pair_stats"):
        s.materialize(group, end=T0)
    yield s
    s.close()


@pytest.fixture
def log(files_root: str) -> PredictionLog:
    plog = PredictionLog(f"{files_root}/predictions")
    plog.append(
        [
            {"request_id": f"r{i}", "model": "fraud", "version": 1, "ts": T0, "prediction": 0.5,
             "entity_key": {"card_id": card}}
            for i, card in enumerate([1, 2, 1, 3])
        ]
    )  # fmt: skip
    return plog


def _offline(store: FeatureStore, group: str, feature: str) -> pd.DataFrame:
    return store.get_features_in_range([f"{group}:{feature}"]).frame


def test_erase_removes_the_entity_everywhere_and_nothing_else(
    store: FeatureStore, log: PredictionLog
) -> None:
    before = verify_erased({"card_id": 1}, store=store, log=log)
    assert before == {"offline:card_stats": 3, "online:card_stats": 1, "prediction_log": 2}

    result = erase_entity({"card_id": 1}, requested_by="dpo", reason="ticket-42", store=store, log=log)

    assert result.removed == {"offline:card_stats": 3, "online:card_stats": 1, "prediction_log": 2}
    assert result.remaining == {"offline:card_stats": 0, "online:card_stats": 0, "prediction_log": 0}
    assert result.verified and result.entity_key == "card_id=1"
    # offline: the committed files still read, without card 1
    assert sorted(_offline(store, "card_stats", "spend")["card_id"].tolist()) == [2, 3]
    assert not store.offline.place.glob("card_stats", "**", "*.tmp")
    # online: gone for card 1, others untouched
    assert store.online.read("card_stats", ["1", "2", "3"])[0] is None
    assert [r is not None for r in store.online.read("card_stats", ["2", "3"])] == [True, True]
    # prediction log
    assert log.count("card_id=1") == 0 and sorted(log.read()["entity_key"]) == ["card_id=2", "card_id=3"]
    # a group keyed by (card_id, merchant) is not reached by card_id alone
    assert len(_offline(store, "pair_stats", "visits")) == 3
    assert store.online.read("pair_stats", [entity_key([1, "m1"])])[0] is not None


def test_erasure_is_recorded_audited_and_a_rerun_finds_nothing(
    store: FeatureStore, log: PredictionLog
) -> None:
    first = erase_entity({"card_id": "1"}, requested_by="dpo", reason="ticket-42", store=store, log=log)
    again = erase_entity({"card_id": 1}, requested_by="dpo", store=store, log=log)
    assert again.verified and not any(again.removed.values()) and not any(again.remaining.values())
    assert verify_erased({"card_id": 1}, store=store, log=log) == again.remaining
    assert [e.id for e in list_erasures(store)] == [again.id, first.id]
    stored = get_erasure(store, first.id)
    assert stored.removed == first.removed and stored.verified and stored.reason == "ticket-42"
    with store.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(erasures)).scalar_one() == 2
    entries = AuditLog(store.db).entries(action="entity.erase")
    assert [(e.actor, e.entity_type) for e in entries] == [("dpo", "entity"), ("dpo", "entity")]
    assert entries[0].after["removed"]["prediction_log"] == 2 and entries[0].after["verified"] is True
    assert "card_id=1" not in entries[0].entity_id  # the immutable log holds a hash, not the key
    assert AuditLog(store.db).verify().ok


def test_composite_keys_reach_composite_groups(store: FeatureStore, log: PredictionLog) -> None:
    result = erase_entity({"card_id": 1, "merchant": "m2"}, requested_by="dpo", store=store, log=log)
    assert result.removed["offline:pair_stats"] == 1 and result.removed["online:pair_stats"] == 1
    assert result.removed["offline:card_stats"] == 3  # card 1's own group is reached too
    assert result.verified
    left = _offline(store, "pair_stats", "visits")
    assert sorted(zip(left["card_id"], left["merchant"], strict=True)) == [(1, "m1"), (2, "m1")]


@pytest.mark.parametrize("online_url", ["sqlite"], indirect=True)
def test_bad_requests_are_refused(store: FeatureStore, log: PredictionLog) -> None:
    with pytest.raises(ValidationError, match="at least one join key"):
        erase_entity({}, requested_by="dpo", store=store, log=log)
    with pytest.raises(ValidationError, match="requested_by ''"):
        erase_entity({"card_id": 1}, requested_by="", store=store, log=log)
    with pytest.raises(ValidationError, match="'card id' is not a valid identifier"):
        erase_entity({"card id": 1}, requested_by="dpo", store=store, log=log)
    with pytest.raises(NotFoundError, match="erasure 99"):
        get_erasure(store, 99)
    assert list_erasures(store) == []
