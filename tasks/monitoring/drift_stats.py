"""The drift statistics, one function each: KS, Wasserstein, PSI, chi-square, Jensen–Shannon, BH.

Pure functions over NumPy arrays (samples or bin counts); :mod:`tasks.monitoring.drift`
decides drift from them. Each matches scipy where scipy has the statistic
(``ks_2samp``, ``wasserstein_distance``, ``chi2_contingency``,
``jensenshannon``, ``false_discovery_control``) to 1e-9.

Example:
    >>> import numpy as np
    >>> from tasks.monitoring.drift_stats import psi
    >>> round(psi(np.array([50, 50]), np.array([50, 50])).statistic, 6)
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

PSI_EPS = 1e-4


@dataclass(frozen=True)
class StatResult:
    """One statistic on one column."""

    method: str
    statistic: float
    p_value: float | None
    effect_size: float


# ---------------------------------------------------------------- statistics


def ks_test(reference: np.ndarray, current: np.ndarray) -> StatResult:
    """Two-sided two-sample KS, as ``scipy.stats.ks_2samp(..., method="asymp")``.

    Example:
        >>> ks_test(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])).statistic
        1.0
    """
    return ks_wasserstein(np.sort(reference), np.sort(current), with_wasserstein=False)[0]


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance, as ``scipy.stats.wasserstein_distance``.

    Example:
        >>> wasserstein(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
        1.0
    """
    return ks_wasserstein(np.sort(reference), np.sort(current), with_wasserstein=True)[1]


_CHUNK = 1 << 14  # elements per block of the KS/W1 pass: small enough to stay in cache


def ks_wasserstein(r: np.ndarray, c: np.ndarray, *, with_wasserstein: bool) -> tuple[StatResult, float]:
    """KS and W1 from one stable merge of two sorted arrays (reference first, so ties match scipy).

    The merge places ``r[i]`` at ``i + searchsorted(c, r[i], "left")`` (before equal current
    values, as a stable sort of ``[r, c]`` would). The two ECDFs' difference after each merged value,
    the KS maximum over tie groups and the W1 terms ``|F−G|·Δz`` are then computed block by block
    (each element exactly as on the whole array, so the cache holds the work) and W1 is summed in one
    ``np.sum`` over all terms, which keeps it bit-identical to the unblocked computation.
    """
    n1, n2 = r.size, c.size
    total = n1 + n2
    pos = np.searchsorted(c, r, side="left")
    pos += np.arange(n1)
    is_r = np.zeros(total, dtype=bool)
    is_r[pos] = True
    zs = np.empty(total)
    zs[pos] = r
    zs[~is_r] = c
    terms = np.empty(total - 1) if with_wasserstein else None
    hi, lo, carry = -np.inf, np.inf, 0
    for s in range(0, total, _CHUNK):
        e = min(s + _CHUNK, total)
        cum1 = np.cumsum(is_r[s:e])
        cum1 += carry
        carry = int(cum1[-1])
        diff = cum1 / n1 - (np.arange(s + 1, e + 1) - cum1) / n2
        # the cdfs are evaluated after each tie group: at the last element of each run of equal values
        last = zs[s + 1 : e + 1] != zs[s:e] if e < total else np.append(zs[s + 1 : e] != zs[s : e - 1], True)
        at_last = diff[last]
        if at_last.size:
            hi, lo = max(hi, float(at_last.max())), min(lo, float(at_last.min()))
        if terms is not None:
            k = min(e, total - 1) - s
            np.multiply(np.abs(diff[:k]), zs[s + 1 : s + 1 + k] - zs[s : s + k], out=terms[s : s + k])
    d = float(np.clip(max(hi, -lo), 0.0, 1.0))
    p = ks_pvalue(d, n1, n2)
    w = float(np.sum(terms)) if terms is not None else float("nan")
    return StatResult("ks", d, p, d), w


#: Above this effective sample size ``m·n/(m+n)`` the KS p-value is asymptotic (see :func:`ks_pvalue`).
KS_EXACT_LIMIT = 10_000


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """Two-sided p-value of a two-sample KS statistic ``d``.

    Up to an effective size ``en = m·n/(m+n)`` of :data:`KS_EXACT_LIMIT` this is
    ``scipy.stats.kstwo.sf(d, round(en))``, what ``ks_2samp(..., method="asymp")``
    returns. Above it, the exact distribution costs up to 0.6 s per column (at
    en = 500,000) while holding the GIL, so the Kolmogorov limit with Stephens'
    small-sample correction, ``kstwobign.sf((√en + 0.12 + 0.11/√en)·d)``, is used
    instead: on a grid of ``d`` it differs from the exact value by at most 1.4e-3
    (en = 10,000), 4.4e-4 (100,000) and 1.4e-4 (1,000,000) absolute, far below
    what moves a decision at α = 0.05 (``tests/tasks/monitoring/test_drift.py`` checks the bound).

    Example:
        >>> round(ks_pvalue(0.002, 1_000_000, 1_000_000), 4)  # exact: 0.036582
        0.0366
    """
    m, n = max(n1, n2), min(n1, n2)
    en = m * n / (m + n)
    if en <= KS_EXACT_LIMIT:
        return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    root = float(np.sqrt(en))
    return float(np.clip(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * d), 0.0, 1.0))


def sorted_bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`tasks.monitoring.profiles.bin_counts` for sorted finite values, from the edges' ranks."""
    left = np.searchsorted(values, edges, side="left")
    right_of_last = int(np.searchsorted(values, edges[-1], side="right"))
    out = np.empty(edges.size + 1, dtype=np.int64)
    out[0] = left[0]
    out[1:-1] = np.diff(left)
    out[-2] += right_of_last - left[-1]  # values equal to the last edge fall in the last (closed) bin
    out[-1] = values.size - right_of_last
    return out


def wasserstein_pvalue(
    reference: np.ndarray, current: np.ndarray, *, permutations: int, max_n: int, seed: int = 0
) -> float:
    """Permutation p-value of W1 on at most ``max_n`` values per side: ``(1 + hits) / (1 + permutations)``."""
    rng = np.random.default_rng(seed)
    a = reference if reference.size <= max_n else rng.choice(reference, max_n, replace=False)
    b = current if current.size <= max_n else rng.choice(current, max_n, replace=False)
    z = np.concatenate([a, b])
    order = np.argsort(z, kind="stable")
    deltas = np.diff(z[order])
    labels = order < a.size
    ranks = np.arange(1, z.size)

    def w(lab: np.ndarray) -> np.ndarray:
        cum = np.cumsum(lab[..., :-1], axis=-1)
        return np.asarray(np.abs(cum / a.size - (ranks - cum) / b.size) @ deltas)

    observed = float(w(labels))
    hits, done = 0, 0
    while done < permutations:
        batch = min(64, permutations - done)
        hits += int((w(rng.permuted(np.tile(labels, (batch, 1)), axis=1)) >= observed * (1 - 1e-12)).sum())
        done += batch
    return (1 + hits) / (1 + permutations)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> StatResult:
    """Population stability index over aligned bins, with its χ² p-value.

    ``PSI = Σ (q − p)·ln(q / p)`` with bin proportions ``p`` (reference) and
    ``q`` (current) floored at ``PSI_EPS``; under no drift
    ``PSI / (1/n + 1/m)`` is about χ² with (non-empty bins − 1) degrees of freedom.

    Example:
        >>> round(psi(np.array([50, 50]), np.array([60, 40])).statistic, 6)
        0.040547
    """
    r, c = np.asarray(reference_counts, float), np.asarray(current_counts, float)
    n, m = r.sum(), c.sum()
    p, q = np.maximum(r / n, PSI_EPS), np.maximum(c / m, PSI_EPS)
    value = float(np.sum((q - p) * np.log(q / p)))
    dof = int(np.count_nonzero((r + c) > 0)) - 1
    pv = float(stats.chi2.sf(value / (1 / n + 1 / m), dof)) if dof > 0 else 1.0
    return StatResult("psi", value, pv, value)


def _table(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs = np.vstack([reference_counts, current_counts]).astype(float)
    obs = obs[:, obs.sum(axis=0) > 0]
    expected = obs.sum(axis=1, keepdims=True) * obs.sum(axis=0, keepdims=True) / obs.sum()
    return obs, expected


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> StatResult:
    """χ² test of homogeneity, as ``scipy.stats.chi2_contingency(table, correction=False)``.

    Example:
        >>> round(chi_square(np.array([50, 50]), np.array([60, 40])).statistic, 6)
        2.020202
    """
    obs, exp = _table(reference_counts, current_counts)
    value = float(np.sum((obs - exp) ** 2 / exp))
    dof = obs.shape[1] - 1
    pv = float(stats.chi2.sf(value, dof)) if dof > 0 else 1.0
    return StatResult("chi2", value, pv, float(np.sqrt(value / obs.sum())))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> StatResult:
    """JS distance (base 2, as ``scipy.spatial.distance.jensenshannon``) with the G-test p-value.

    Example:
        >>> round(jensen_shannon(np.array([50, 50]), np.array([60, 40])).effect_size, 6)
        0.085435
    """
    obs, exp = _table(reference_counts, current_counts)
    p, q = obs[0] / obs[0].sum(), obs[1] / obs[1].sum()
    mid = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * np.log(p / mid), 0.0).sum() + np.where(q > 0, q * np.log(q / mid), 0.0).sum()
        g = 2.0 * float(np.where(obs > 0, obs * np.log(obs / exp), 0.0).sum())
    distance = float(np.sqrt(max(kl / 2.0, 0.0) / np.log(2.0)))
    dof = obs.shape[1] - 1
    pv = float(stats.chi2.sf(g, dof)) if dof > 0 else 1.0
    return StatResult("jensenshannon", distance, pv, distance)


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """BH-adjusted p-values, as ``scipy.stats.false_discovery_control(p, method="bh")``.

    Example:
        >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return out
