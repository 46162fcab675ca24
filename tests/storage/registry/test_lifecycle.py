"""Rollback through the alias history."""

from __future__ import annotations

import pytest

from storage.audit import AuditLog
from storage.errors import NotFoundError
from storage.registry.core import Registry


def _promote(registry: Registry, number: int) -> None:
    registry.transition_stage("fraud", number, "staging")
    registry.transition_stage("fraud", number, "production", alias="champion")


def test_rollback_restores_previous_champion(registry: Registry) -> None:
    registry.create_model("fraud")
    for _ in range(3):
        registry.create_version("fraud", framework="sklearn")
    _promote(registry, 1)
    _promote(registry, 2)
    _promote(registry, 3)
    done = registry.rollback("fraud", stage="production", reason="v3 misbehaves", actor="oncall")
    assert (done.restored_version, done.replaced_version) == (2, 3)
    assert registry.get_version("fraud", "@champion").number == 2
    assert registry.get_version("fraud", 2).stage == "production"
    assert registry.get_version("fraud", 3).stage == "archived"
    assert [v.number for v in registry.search_versions(model="fraud", stage="production").items] == [2]
    last = AuditLog(registry.db).entries(action="version.rollback")
    assert last[-1].after["version"] == 2 and last[-1].actor == "oncall"
    assert AuditLog(registry.db).verify().ok


def test_rollback_without_history_is_refused(registry: Registry) -> None:
    registry.create_model("fraud")
    registry.create_version("fraud", framework="sklearn")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        registry.rollback("fraud")
    _promote(registry, 1)
    with pytest.raises(NotFoundError, match="no earlier version"):
        registry.rollback("fraud")
    assert registry.get_version("fraud", 1).stage == "production"


def test_repeated_rollbacks_walk_back_through_the_history(registry: Registry) -> None:
    registry.create_model("fraud")
    for number in (1, 2, 3):
        registry.create_version("fraud", framework="sklearn")
        _promote(registry, number)
    assert registry.rollback("fraud").restored_version == 2
    assert registry.rollback("fraud").restored_version == 1
    with pytest.raises(NotFoundError, match="no earlier version"):
        registry.rollback("fraud")
    assert registry.get_version("fraud", "production").number == 1
    moves = [(m.from_version, m.to_version) for m in registry.alias_history("fraud", "champion")]
    assert moves == [(None, 1), (1, 2), (2, 3), (3, 2), (2, 1)]
