"""``mlops endpoints`` and ``mlops canary`` on the metadata DB that MLOPS_HOME points at."""

from __future__ import annotations

import pytest

from mlops.cli_endpoints import parse_variant, parse_weights
from storage.audit import AuditLog
from storage.db import Database
from storage.endpoints.store import EndpointStore, StatsRow
from storage.errors import ValidationError
from tests.mlops.test_cli import failed, ok, ok_json


def _store() -> EndpointStore:
    from blocks.settings import get_settings

    return EndpointStore(Database(get_settings().resolved_database_url()))


def test_parsers_name_the_bad_part() -> None:
    assert parse_variant("a=m:2").weight == 100.0
    with pytest.raises(ValidationError, match="'a=m' is malformed"):
        parse_variant("a=m")
    with pytest.raises(ValidationError, match="weight 'x'"):
        parse_variant("a=m:1:x")
    with pytest.raises(ValidationError, match="'a:90' is malformed"):
        parse_weights(["a:90"])


def test_ab_endpoint_from_the_command_line() -> None:
    variants = ("--variant", "a=fraud:1:50", "--variant", "b=fraud:2:50")
    created = ok_json("endpoints", "create", "fraud", *variants, "--policy", "ab")
    assert created["weights"] == {"a": 50.0, "b": 50.0}
    moved = ok_json("endpoints", "set-traffic", "fraud", "a=90", "b=10", "--reason", "ramp")
    assert moved["weights"] == {"a": 90.0, "b": 10.0}
    assert [e["name"] for e in ok_json("endpoints", "list")] == ["fraud"]
    assert "fraud (ab, revision 2)" in ok("endpoints", "show", "fraud").stdout
    store = _store()
    store.flush_stats(
        [
            StatsRow("fraud", "a", "r", 900, 3, 900.0, {90: 900}),
            StatsRow("fraud", "b", "r", 100, 0, 100.0, {90: 100}),
        ]
    )
    store.record_outcomes("fraud", [(f"a{i}", "a", float(i % 10 == 0)) for i in range(500)])
    store.record_outcomes("fraud", [(f"b{i}", "b", float(i % 3 == 0)) for i in range(500)])
    report = ok_json("endpoints", "ab-report", "fraud")
    assert report["srm_ok"] and report["comparisons"][0]["significant"]
    assert "b vs a" in ok("endpoints", "ab-report", "fraud").stdout
    assert (
        ok_json("endpoints", "ab-report", "fraud", "--outcomes", "accuracy")["comparisons"] == []
    )  # no log yet
    assert "--outcomes 'auc'" in failed("endpoints", "ab-report", "fraud", "--outcomes", "auc").stderr
    assert ok_json("endpoints", "promote-winner", "fraud") == {
        "winner": "b",
        "weights": {"a": 0.0, "b": 100.0},
    }
    shadowed = ok_json("endpoints", "shadow", "fraud", "--variant", "s=fraud:3", "--percent", "20")
    assert shadowed["settings"]["shadow_percent"] == 20
    assert failed("endpoints", "set-traffic", "fraud", "zzz=10").stderr.startswith(
        "error: endpoint 'fraud' has no live"
    )
    assert "policy 'ab'" in failed("endpoints", "rollback", "fraud").stderr
    kinds = [e["kind"] for e in ok_json("endpoints", "events", "fraud")]
    assert kinds == ["endpoint.create", "traffic.set", "traffic.set", "decision.promote_winner", "shadow.set"]
    assert all(e.actor == "tester" for e in AuditLog(store.db).entries(entity_type="endpoint"))
    store.db.dispose()


def test_canary_and_blue_green_from_the_command_line() -> None:
    ok("endpoints", "create", "ep", "--variant", "main=m:1")
    started = ok_json("canary", "start", "ep", "--version", "2", "--steps", "10,100", "--min-requests", "5")
    assert started["weights"] == {"stable": 90.0, "canary": 10.0}
    assert ok_json("canary", "analyze", "ep", "--dry-run")["decision"] == "hold"
    store = _store()
    store.flush_stats(
        [
            StatsRow("ep", "stable", "r", 100, 0, 100.0, {90: 100}),
            StatsRow("ep", "canary", "r", 20, 0, 20.0, {90: 20}),
        ]
    )
    assert ok_json("canary", "analyze", "ep")["decision"] == "advance"
    assert ok_json("canary", "status", "ep")["weights"] == {"stable": 0.0, "canary": 100.0}
    assert ok_json("canary", "rollback", "ep", "--reason", "pager")["weights"] == {
        "stable": 100.0,
        "canary": 0.0,
    }
    assert "no running canary" in failed("canary", "rollback", "ep").stderr
    store.db.dispose()

    ok(
        "endpoints",
        "create",
        "bg",
        "--variant",
        "blue=m:1:100",
        "--variant",
        "green=m:1:0",
        "--policy",
        "blue_green",
    )
    assert "is live" in failed("endpoints", "deploy", "bg", "blue", "--version", "2").stderr
    ok("endpoints", "deploy", "bg", "green", "--version", "2")
    assert ok_json("endpoints", "switch", "bg")["settings"]["live"] == "green"
    assert ok_json("endpoints", "rollback", "bg")["settings"]["live"] == "blue"
    assert ok_json("endpoints", "switch-back", "bg")["settings"]["live"] == "green"
    ok("endpoints", "delete", "bg")
    assert "endpoint 'bg' does not exist" in failed("endpoints", "show", "bg").stderr
