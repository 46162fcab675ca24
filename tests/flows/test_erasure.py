"""The erase-entity flow runs for real under the Prefect test harness."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from flows.erasure import erase_entity_flow
from storage.audit import AuditLog
from storage.errors import IntegrityError
from storage.features.store import FeatureStore
from storage.monitoring.prediction_log import PredictionLog
from tasks.governance import erasure as erasure_tasks

T0 = datetime(2026, 9, 1, tzinfo=UTC)


@pytest.fixture
def store() -> FeatureStore:
    s = FeatureStore.from_settings()
    s.definitions.create_entity("card", join_keys=["card_id"])
    s.definitions.create_group("card_stats", entity="card", event_time_column="ts")
    s.definitions.register_feature("card_stats", "spend", "float")
    s.ingest("card_stats", pd.DataFrame({"card_id": [1, 2], "ts": [T0, T0], "spend": [1.0, 2.0]}))
    s.materialize("card_stats", end=datetime(2026, 9, 2, tzinfo=UTC))
    PredictionLog.from_settings().append(
        [
            {
                "request_id": "r1",
                "model": "fraud",
                "version": 1,
                "ts": T0,
                "prediction": 1,
                "entity_key": "card_id=1",
            }
        ]
    )
    return s


def test_flow_erases_verifies_publishes_and_reruns_clean(prefect_harness: None, store: FeatureStore) -> None:
    from prefect.artifacts import Artifact

    result = erase_entity_flow({"card_id": 1}, requested_by="dpo", reason="ticket-7")
    assert result["verified"] is True and result["entity_key"] == "card_id=1"
    assert result["removed"] == {"offline:card_stats": 1, "online:card_stats": 1, "prediction_log": 1}
    assert store.online.read("card_stats", ["1", "2"])[0] is None
    assert store.online.read("card_stats", ["2"])[0] is not None
    artifact: Any = Artifact.get(f"erasure-{result['id']}")
    assert artifact is not None and "card_id=1" not in str(artifact.data)
    again = erase_entity_flow({"card_id": 1}, requested_by="dpo")
    assert again["verified"] and not any(again["removed"].values())
    assert len(AuditLog(store.db).entries(action="entity.erase")) == 2


def test_leftover_rows_fail_the_task_after_recording(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.governance.erasure

    monkeypatch.setattr(storage.governance.erasure, "verify_erased", lambda *a, **k: {"prediction_log": 3})
    with pytest.raises(IntegrityError, match=r"left rows behind: \{'prediction_log': 3\}"):
        erasure_tasks.run_erasure({"card_id": 1}, "dpo")
    [entry] = AuditLog(store.db).entries(action="entity.erase")
    assert entry.after["verified"] is False
