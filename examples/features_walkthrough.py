"""The feature store end to end: define, ingest, point-in-time training set, online reads.

Card-transaction features land in the offline store (Parquet, by date); a
training set is joined point in time (a value that became available after a
label's timestamp never leaks into it); the latest values are materialized to
the online store and read back by entity key, with a staleness flag.

Run it with ``python -m examples.features_walkthrough`` (or ``make demo``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from storage.errors import AlreadyExistsError
from storage.features.store import FeatureStore

# Ten days of history ending today, so the latest values are fresh (within the 7-day TTL).
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=9)


def define(store: FeatureStore) -> None:
    """Entity, feature group and features (skipped when they exist from an earlier run)."""
    defs = store.definitions
    try:
        defs.create_entity("card", join_keys=["card_id"], description="a payment card")
        defs.create_group(
            "card_activity",
            entity="card",
            event_time_column="ts",
            available_time_column="ingested_at",
            ttl_seconds=7 * 86400,
            source="payments.transactions",
            owner="risk-team",
        )
        defs.register_feature("card_activity", "amount_mean_7d", "float", description="mean amount, 7 days")
        defs.register_feature("card_activity", "tx_count_7d", "int", description="transactions, 7 days")
        defs.register_feature("card_activity", "merchant_category", "string")
    except AlreadyExistsError:
        pass


def activity(cards: int = 200, days: int = 10, seed: int = 7) -> pd.DataFrame:
    """Daily feature values per card; each becomes available two hours after its event."""
    rng = np.random.default_rng(seed)
    rows = cards * days
    day = np.repeat(np.arange(days), cards)
    hour = rng.integers(0, 20, rows)
    ts = pd.Timestamp(START) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour, unit="h")
    return pd.DataFrame(
        {
            "card_id": np.tile(np.arange(cards), days),
            "ts": ts,
            "ingested_at": ts + pd.Timedelta(hours=2),
            "amount_mean_7d": rng.gamma(2.0, 40.0, rows).round(2),
            "tx_count_7d": rng.poisson(12, rows),
            "merchant_category": rng.choice(["grocery", "travel", "online", "fuel"], rows),
        }
    )


def main() -> dict[str, Any]:
    """Run the walk-through and print where everything is."""
    store = FeatureStore.from_settings()
    try:
        define(store)
        ingested = store.ingest("card_activity", activity())
        labels = pd.DataFrame(
            {
                "card_id": [1, 2, 3, 4],
                "event_timestamp": [START + timedelta(days=d, hours=12) for d in (4, 5, 8, 2)],
                "is_fraud": [0, 1, 0, 0],
            }
        )
        features = [
            "card_activity:amount_mean_7d",
            "card_activity:tx_count_7d",
            "card_activity:merchant_category",
        ]
        training = store.get_historical_features(labels, features)
        materialized = store.materialize("card_activity", end=datetime.now(UTC))
        online = store.get_online_features([{"card_id": 1}, {"card_id": 2}, {"card_id": 999}], features)
        print(f"ingested {ingested.rows} rows into {len(ingested.files)} daily files")
        print(f"point-in-time training set: {len(training.frame)} rows, null share {training.null_share}")
        print(f"features used: {training.feature_refs}")
        print(f"materialized {materialized.rows} entities; online statuses {online.statuses}")
        print(f"offline store: {store.offline.root}")
        fresh = [s["amount_mean_7d"] for s in online.statuses] == ["present", "present", "missing"]
        if training.frame.empty or not fresh:
            raise SystemExit("feature store walk-through failed")
        return {"training_rows": len(training.frame), "materialized": materialized.rows}
    finally:
        store.close()


if __name__ == "__main__":
    main()
