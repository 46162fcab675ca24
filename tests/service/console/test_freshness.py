"""The online store's freshness per group, on SQLite and on the real Redis (skipped without one)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from service.console.freshness import online_freshness
from storage.features.online import open_online_store


def test_newest_event_count_and_watermark(online_url: str) -> None:
    store = open_online_store(online_url)
    store.write("trips", [("1", 1_700_000_000_000_000, "{}"), ("2", 1_600_000_000_000_000, "{}")])
    store.write("other", [("9", 1_800_000_000_000_000, "{}")])
    store.set_watermark("trips", 1_700_000_100_000_000)
    found = online_freshness(online_url, ["trips", "empty"])
    store.close()
    assert found["trips"].newest == datetime.fromtimestamp(1_700_000_000, UTC)
    assert found["trips"].entities == 2 and not found["trips"].capped
    assert found["trips"].watermark == datetime.fromtimestamp(1_700_000_100, UTC)
    assert found["empty"].newest is None and found["empty"].entities == 0 and not found["empty"].problem


def test_a_store_never_written_says_so(tmp_path: Path) -> None:
    found = online_freshness(f"sqlite:///{tmp_path}/none.db", ["trips"])
    assert found["trips"].problem.startswith("never materialized")
    unknown = online_freshness("memcached://x", ["trips"])["trips"]
    assert unknown.problem.startswith("unknown online store URL")
