"""Attestations: who vouches for a compliance rule, for which model, until when."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.audit import AuditLog
from storage.errors import NotFoundError, ValidationError
from storage.governance.attestations import AttestationStore
from storage.registry.core import Registry
from storage.schema import utcnow

KNOWN = {"GDPR": {"gdpr-art35-dpia"}, "HIPAA": {"hipaa-baa"}}


def test_attest_is_audited_and_valid_until_it_expires(registry: Registry) -> None:
    registry.create_model("fraud")
    store = AttestationStore(registry, known_rules=KNOWN)
    made = store.attest(
        "GDPR",
        "gdpr-art35-dpia",
        attested_by="Dana",
        statement="DPIA done",
        expires_in_days=30,
        model="fraud",
    )
    assert (made.model, made.attested_by) == ("fraud", "Dana")
    assert store.valid("GDPR", "gdpr-art35-dpia", "fraud") == made
    assert store.valid("GDPR", "gdpr-art35-dpia", None) is None  # model-specific, not global
    later = utcnow() + timedelta(days=31)
    assert store.valid("GDPR", "gdpr-art35-dpia", "fraud", at=later) is None
    assert made.expired(later) and not made.expired()
    assert store.latest("GDPR", "gdpr-art35-dpia", "fraud") == made
    entry = AuditLog(registry.db).entries(action="compliance.attest")[0]
    assert (entry.actor, entry.entity_id) == ("Dana", "GDPR/gdpr-art35-dpia/fraud")
    assert AuditLog(registry.db).verify().ok


def test_global_attestation_covers_every_model_and_newest_wins(registry: Registry) -> None:
    registry.create_model("a")
    store = AttestationStore(registry)
    old = utcnow() - timedelta(days=10)
    store.attest("HIPAA", "hipaa-baa", attested_by="Old", statement="x", expires_in_days=5, now=old)
    assert store.valid("HIPAA", "hipaa-baa", "a") is None  # expired five days ago
    store.attest("HIPAA", "hipaa-baa", attested_by="Eve", statement="BAAs signed", expires_in_days=365)
    assert store.valid("HIPAA", "hipaa-baa", "a").attested_by == "Eve"  # type: ignore[union-attr]
    assert [a.attested_by for a in store.list(include_expired=True)] == ["Eve", "Old"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attested_by": " "}, "must name the person"),
        ({"statement": ""}, "statement '' is empty"),
        ({"expires_in_days": 0}, "must be positive"),
        ({"expires_in_days": -3}, "must be positive"),
        ({"rule_id": "nope"}, "rule 'nope' is not in framework GDPR: known rules are gdpr-art35-dpia"),
        ({"framework": "PCI"}, "compliance framework 'PCI' is unknown: known are GDPR, HIPAA"),
        ({"model": "ghost"}, "ghost"),
    ],
)
def test_bad_attestations_are_refused(tmp_path: object, kwargs: dict[str, object], message: str) -> None:
    registry = Registry.from_settings()
    store = AttestationStore(registry, known_rules=KNOWN)
    args: dict[str, object] = {
        "framework": "GDPR",
        "rule_id": "gdpr-art35-dpia",
        "attested_by": "Dana",
        "statement": "done",
        "expires_in_days": 10,
    } | kwargs
    framework, rule_id = args.pop("framework"), args.pop("rule_id")
    with pytest.raises((ValidationError, NotFoundError), match=message):
        store.attest(framework, rule_id, **args)  # type: ignore[arg-type]
    assert store.list(include_expired=True) == []
