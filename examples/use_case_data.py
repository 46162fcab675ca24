"""Synthetic data for the demo's use cases, with a signal a model can learn.

Example:
    >>> frame = transactions(500, seed=1)
    >>> len(frame), bool(0.0 < frame["is_fraud"].mean() < 0.5)
    (500, True)
    >>> clicks = impressions(300, seed=2)
    >>> set(clicks["clicked"].unique()) <= {0, 1}
    True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = ["grocery", "travel", "electronics", "fuel", "online"]
COUNTRIES = ["NL", "DE", "FR", "ES"]


def transactions(rows: int, *, seed: int = 0, amount_shift: float = 0.0) -> pd.DataFrame:
    """Card transactions with a fraud label driven by amount, hour, category and velocity.

    ``amount_shift`` multiplies amounts by ``1 + amount_shift`` (a drifted window).
    """
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 45.0, rows) * (1.0 + amount_shift)
    hour = rng.integers(0, 24, rows)
    category = rng.choice(CATEGORIES, rows, p=[0.35, 0.1, 0.15, 0.2, 0.2])
    tx_count = rng.poisson(12, rows)
    amount_mean = rng.gamma(2.0, 40.0, rows)
    country = rng.choice(COUNTRIES, rows)
    age_group = rng.choice(["18-30", "31-50", "51+"], rows, p=[0.3, 0.45, 0.25])
    logit = (
        -4.2
        + 1.6 * np.log1p(amount / np.maximum(amount_mean, 1.0))
        + 1.1 * ((hour < 6) | (hour > 22))
        + 0.9 * np.isin(category, ["electronics", "online"])
        + 0.06 * (tx_count - 12)
    )
    fraud = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "card_id": rng.integers(0, 200, rows),
            "amount": amount.round(2),
            "hour": hour,
            "merchant_category": category,
            "tx_count_7d": tx_count,
            "amount_mean_7d": amount_mean.round(2),
            "country": country,
            "age_group": age_group,
            "is_fraud": fraud,
        }
    )


def impressions(rows: int, *, seed: int = 0, shift_prices: float = 0.0) -> pd.DataFrame:
    """Recommendation impressions: did the user click the shown item?

    ``shift_prices`` multiplies prices by ``1 + shift_prices`` (a drifted window).
    """
    rng = np.random.default_rng(seed)
    user_id = rng.integers(0, 2_000, rows)
    affinity = rng.normal(0, 1, 2_000)[user_id]
    price = rng.gamma(2.0, 20.0, rows) * (1.0 + shift_prices)
    category = rng.choice(["books", "music", "games", "garden"], rows)
    position = rng.integers(1, 11, rows)
    past_clicks = rng.poisson(3, rows)
    # affinity counts the other way for garden items: an interaction a shallow model misses
    logit = 0.3 + 2.5 * affinity * np.where(category == "garden", -1.0, 1.0) - 0.04 * price
    logit += 0.5 * past_clicks - 0.35 * position
    clicked = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "user_id": user_id,
            "price": price.round(2),
            "category": category,
            "position": position,
            "past_clicks": past_clicks,
            "user_affinity": affinity.round(4),
            "clicked": clicked,
        }
    )
