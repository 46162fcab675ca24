"""Alerts: de-duplication by fingerprint, resolution, severities, health score."""

from __future__ import annotations

import pytest

from storage.audit import AuditLog
from storage.errors import NotFoundError, ValidationError
from storage.monitoring.alerts import AlertStore, health_score
from storage.registry.core import Registry


@pytest.fixture
def store(registry: Registry) -> AlertStore:
    registry.create_model("m")
    registry.create_version("m", framework="sklearn")
    registry.create_version("m", framework="sklearn")
    return AlertStore(registry)


def test_repeats_are_counted_not_reraised(store: AlertStore) -> None:
    first = store.raise_alert("m", 1, kind="drift", severity="warning", subject="age", message="a")
    again = store.raise_alert("m", 1, kind="drift", severity="critical", subject="age", message="b")
    other_version = store.raise_alert("m", 2, kind="drift", severity="warning", subject="age", message="c")
    other_subject = store.raise_alert("m", 1, kind="drift", severity="warning", subject="fare", message="d")
    assert (first.new, again.new, other_version.new, other_subject.new) == (True, False, True, True)
    assert (again.id, again.count, again.severity, again.message) == (first.id, 2, "critical", "b")
    assert len(store.open_alerts("m")) == 3


def test_resolved_alert_opens_anew_and_is_audited(store: AlertStore) -> None:
    first = store.raise_alert("m", 1, kind="performance", severity="critical", subject="auc", message="x")
    assert store.resolve(first.id).status == "resolved"
    reopened = store.raise_alert("m", 1, kind="performance", severity="critical", subject="auc", message="y")
    assert reopened.new and reopened.id != first.id
    actions = [e.action for e in AuditLog(store.registry.db).entries(limit=100)]
    assert actions.count("alert.raise") == 2 and actions.count("alert.resolve") == 1
    with pytest.raises(NotFoundError, match="alert 99 does not exist"):
        store.resolve(99)


def test_bad_severity_and_health_score(store: AlertStore) -> None:
    with pytest.raises(ValidationError, match="severity 'loud'"):
        store.raise_alert("m", 1, kind="drift", severity="loud", subject="x", message="")
    critical = store.raise_alert("m", 1, kind="drift", severity="critical", subject="dataset", message="")
    warning = store.raise_alert("m", 1, kind="drift", severity="warning", subject="age", message="")
    info = store.raise_alert("m", 1, kind="drift", severity="info", subject="note", message="")
    assert health_score([critical, warning, info]) == 75.0
    assert health_score([critical], performance_drop=0.05, latency_ratio=1.5) == 100 - 20 - 10 - 5
    assert health_score([critical] * 6) == 0.0
