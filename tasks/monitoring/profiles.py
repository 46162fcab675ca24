"""Reference profiles: what a model's training data looked like, in a form drift tests compare against.

A :class:`ReferenceProfile` holds, per column:

* **numeric** columns (:class:`NumericProfile`): count, nulls, mean and the sum
  of squared deviations, min, max, a histogram whose bin edges are frozen
  (values outside them are counted as ``below`` / ``above``) and a *keyed
  bottom-k sample*: every row gets a pseudo-random priority from a 64-bit
  hash of its row number, and the sample keeps the ``sample_size`` non-null
  values with the smallest priorities, sorted. Columns with at most
  ``sample_size`` values keep every value (the KS test is then exact).
* **categorical** columns (:class:`CategoricalProfile`): count, nulls and the
  frequency of every category (values compared as strings).

The target and prediction columns, when named, are profiled like any other
column and recorded as such (label and prediction drift use them).

Merging is exact: counts, nulls, histograms and category frequencies add up;
the bottom-k sample of two chunks is the bottom-k of the union of their
samples, which is the same set as the bottom-k of the whole, so profiling in
chunks and merging gives the very same sample as profiling at once. Only the
mean and the squared deviations (Chan's parallel formula) can differ in the
last floating-point digits. The chunks must use the same frozen ``edges``
and number their rows globally (``offset``).

The sample's error bound: the hashed priorities make the sample a uniform
random sample without replacement of the non-null values, so by the
Dvoretzky–Kiefer–Wolfowitz inequality its ECDF differs from the full
column's by more than ``eps`` with probability at most ``2·exp(−2·k·eps²)``:
for ``k = 100,000`` that is ``eps = 0.0062`` at probability 1e-3
(see :func:`sample_error_bound`). KS against the sample tests the sample, so
its p-value is computed with ``n = k``, which is correct, not optimistic.

Missing values: NaN, None and ±inf count as nulls.

Example:
    >>> import pandas as pd
    >>> from tasks.monitoring.profiles import build_profile, merge_profiles
    >>> frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
    >>> p = build_profile(frame, bins=2)
    >>> p.columns["x"].count, p.columns["x"].nulls, p.columns["c"].categories
    (3, 1, {'a': 2, 'b': 1})
    >>> edges = p.edges()
    >>> first = build_profile(frame.iloc[:2], edges=edges)
    >>> merged = merge_profiles(first, build_profile(frame.iloc[2:], edges=edges, offset=2))
    >>> x = merged.columns["x"]
    >>> x.sample.tolist(), x.counts.tolist(), merged.columns["c"] == p.columns["c"]
    ([1.0, 2.0, 4.0], [1, 2], True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import ValidationError

FORMAT_VERSION = 1
DEFAULT_SAMPLE_SIZE = 100_000
DEFAULT_BINS = 10
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def sample_error_bound(sample_size: int, probability: float = 1e-3) -> float:
    """The ECDF error ``eps`` that a bottom-k sample exceeds with at most ``probability`` (DKW).

    Example:
        >>> round(sample_error_bound(100_000), 4)
        0.0062
    """
    return math.sqrt(math.log(2.0 / probability) / (2.0 * sample_size))


def _priorities(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of ``keys ^ seed``: a bijection, so distinct rows never tie."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """One numeric column: moments, frozen-edge histogram and a sorted keyed sample."""

    count: int
    nulls: int
    mean: float
    m2: float
    min: float | None
    max: float | None
    edges: np.ndarray
    counts: np.ndarray
    below: int
    above: int
    sample: np.ndarray
    sample_keys: np.ndarray
    kind: str = field(default="numeric", init=False)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1), 0.0 with fewer than two values."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": "numeric",
            "count": self.count,
            "nulls": self.nulls,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
            "histogram": {
                "edges": self.edges.tolist(),
                "counts": self.counts.tolist(),
                "below": self.below,
                "above": self.above,
            },
            "sample": self.sample.tolist(),
            "sample_keys": self.sample_keys.tolist(),
        }


@dataclass(frozen=True)
class CategoricalProfile:
    """One categorical column: category frequencies (keys are the values as strings)."""

    count: int
    nulls: int
    categories: dict[str, int]
    numeric_source: bool = False
    kind: str = field(default="categorical", init=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": "categorical",
            "count": self.count,
            "nulls": self.nulls,
            "categories": dict(self.categories),
            "numeric_source": self.numeric_source,
        }


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Profiles of every column of a reference (training) frame.

    ``sample_size`` is the numeric samples' size limit, 0 when every value is kept.
    """

    columns: dict[str, ColumnProfile]
    rows: int
    sample_size: int
    seed: int = 0
    target: str | None = None
    prediction: str | None = None

    def edges(self) -> dict[str, list[float]]:
        """The frozen histogram edges per numeric column (pass them to every chunk's profile)."""
        return {n: c.edges.tolist() for n, c in self.columns.items() if isinstance(c, NumericProfile)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps`` works on it); :func:`profile_from_dict` reverses it."""
        return {
            "format": FORMAT_VERSION,
            "rows": self.rows,
            "sample_size": self.sample_size,
            "seed": self.seed,
            "target": self.target,
            "prediction": self.prediction,
            "columns": {n: c.to_dict() for n, c in self.columns.items()},
        }


def is_numeric(values: pd.Series) -> bool:
    """True for int/float columns (bool and everything else is categorical)."""
    return bool(pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype))


def numeric_values(values: pd.Series, column: str) -> np.ndarray:
    """The column as float64 with nulls as NaN; ValidationError naming ``column`` when not numeric."""
    try:
        return pd.to_numeric(values, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"column {column!r} is not numeric: {exc}") from exc


def category_counts(values: pd.Series) -> tuple[dict[str, int], int]:
    """Frequencies of the non-null values (as strings, sorted by name) and the null count."""
    present = values.dropna()
    counts = present.astype(str).value_counts(sort=False)
    return {str(k): int(v) for k, v in sorted(counts.items())}, int(len(values) - len(present))


def histogram_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Quantile bin edges (deciles by default) of the finite values; two edges at least."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([0.0, 1.0])
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    return edges if edges.size >= 2 else np.array([edges[0], edges[0] + 1.0])


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``[below, bin_1 … bin_k, above]`` counts; bins are ``np.histogram``'s (the last one closed)."""
    idx = np.searchsorted(edges, values, side="right")
    idx[values == edges[-1]] = edges.size - 1
    return np.bincount(idx, minlength=edges.size + 1)


def _numeric_profile(
    x: np.ndarray,
    keys: np.ndarray,
    prio: np.ndarray,
    edges: np.ndarray | None,
    bins: int,
    k: int,
    column: str,
) -> NumericProfile:
    ok = np.isfinite(x)
    fin = x[ok]
    edges = histogram_edges(fin, bins) if edges is None else edges
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) < 0) or not np.all(np.isfinite(edges)):
        raise ValidationError(f"column {column!r}: histogram edges must be >= 2 finite, increasing values")
    v, vk = fin, keys[ok]
    if v.size > k:
        pick = np.argpartition(prio[ok], k - 1)[:k]
        v, vk = v[pick], vk[pick]
    order = np.lexsort((vk, v))
    binned = bin_counts(fin, edges)
    n = int(fin.size)
    mean = float(fin.mean()) if n else 0.0
    return NumericProfile(
        count=n,
        nulls=int(x.size - n),
        mean=mean,
        m2=float(np.square(fin - mean).sum()) if n else 0.0,
        min=float(fin.min()) if n else None,
        max=float(fin.max()) if n else None,
        edges=_frozen(edges.astype(float)),
        counts=_frozen(binned[1:-1].astype(np.int64)),
        below=int(binned[0]),
        above=int(binned[-1]),
        sample=_frozen(v[order]),
        sample_keys=_frozen(vk[order].astype(np.int64)),
    )


def build_profile(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    categorical: Iterable[str] = (),
    target: str | None = None,
    prediction: str | None = None,
    edges: Mapping[str, Sequence[float]] | None = None,
    bins: int = DEFAULT_BINS,
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    offset: int = 0,
    seed: int = 0,
) -> ReferenceProfile:
    """Profile ``frame`` (or one chunk of a larger frame).

    Args:
        frame: The reference data (a training frame or one chunk of it).
        columns: Columns to profile; all of ``frame``'s by default.
        categorical: Columns to treat as categorical even when numeric (e.g. integer codes).
        target: The label column, if any (profiled and recorded as the target).
        prediction: The prediction column, if any.
        edges: Frozen histogram edges per numeric column; quantile edges of this frame otherwise.
            Every chunk of one profile must use the same edges (``first.edges()``).
        bins: Number of quantile bins when edges are computed here.
        sample_size: Size of the keyed sample per numeric column; None keeps every value.
        offset: Global row number of this frame's first row (for chunks).
        seed: Seed of the row hash (chunks of one profile must share it).

    Raises:
        ValidationError: a named column is not in ``frame``, or a numeric column's edges are bad.

    Example:
        >>> import pandas as pd
        >>> p = build_profile(pd.DataFrame({"y": [0, 1, 1]}), categorical=["y"], target="y")
        >>> p.target, p.columns["y"].categories
        ('y', {'0': 1, '1': 2})
    """
    names = list(frame.columns) if columns is None else list(columns)
    cats = set(categorical)
    for name in [*names, *cats, *(c for c in (target, prediction) if c)]:
        if name not in frame.columns:
            raise ValidationError(f"column {name!r} is not in the frame")
    for c in (target, prediction):
        if c and c not in names:
            names.append(c)
    k = int(sample_size) if sample_size is not None else max(len(frame), 1)
    if k < 1:
        raise ValidationError("sample_size must be at least 1")
    keys = np.arange(offset, offset + len(frame), dtype=np.int64)
    prio = _priorities(keys, seed)
    out: dict[str, ColumnProfile] = {}
    for name in names:
        s = frame[name]
        if name in cats or not is_numeric(s):
            counts, nulls = category_counts(s)
            out[name] = CategoricalProfile(len(s) - nulls, nulls, counts, numeric_source=is_numeric(s))
        else:
            x = numeric_values(s, name)
            e = np.asarray(edges[name], dtype=float) if edges and name in edges else None
            out[name] = _numeric_profile(x, keys, prio, e, bins, k, name)
    return ReferenceProfile(out, len(frame), k if sample_size is not None else 0, seed, target, prediction)


def _merge_numeric(a: NumericProfile, b: NumericProfile, k: int, seed: int, column: str) -> NumericProfile:
    if not np.array_equal(a.edges, b.edges):
        raise ValidationError(
            f"column {column!r}: histogram edges differ, build every chunk with the same edges"
        )
    v = np.concatenate([a.sample, b.sample])
    vk = np.concatenate([a.sample_keys, b.sample_keys])
    if k and v.size > k:
        pick = np.argpartition(_priorities(vk, seed), k - 1)[:k]
        v, vk = v[pick], vk[pick]
    order = np.lexsort((vk, v))
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / n if n else 0.0
    m2 = a.m2 + b.m2 + delta * delta * a.count * b.count / n if n else 0.0
    lows = [m for m in (a.min, b.min) if m is not None]
    highs = [m for m in (a.max, b.max) if m is not None]
    return NumericProfile(
        count=n,
        nulls=a.nulls + b.nulls,
        mean=mean,
        m2=m2,
        min=min(lows) if lows else None,
        max=max(highs) if highs else None,
        edges=a.edges,
        counts=_frozen(a.counts + b.counts),
        below=a.below + b.below,
        above=a.above + b.above,
        sample=_frozen(v[order]),
        sample_keys=_frozen(vk[order]),
    )


def _as_categorical(p: ColumnProfile) -> CategoricalProfile:
    if isinstance(p, CategoricalProfile):
        return p
    return CategoricalProfile(0, p.nulls, {}, numeric_source=True)


def merge_profiles(a: ReferenceProfile, b: ReferenceProfile) -> ReferenceProfile:
    """The profile of two chunks' rows together (exact: see the module docstring).

    A column that is entirely null in one chunk (and so looked numeric there)
    takes the other chunk's kind.

    Raises:
        ValidationError: the chunks differ in columns, sample size, seed, target,
            prediction, a column's kind or a column's edges (naming the column).
    """
    if list(a.columns) != list(b.columns):
        raise ValidationError(f"profiles have different columns: {list(a.columns)} vs {list(b.columns)}")
    for attr in ("sample_size", "seed", "target", "prediction"):
        if getattr(a, attr) != getattr(b, attr):
            raise ValidationError(f"profiles differ in {attr}: {getattr(a, attr)!r} vs {getattr(b, attr)!r}")
    out: dict[str, ColumnProfile] = {}
    for name, pa in a.columns.items():
        pb = b.columns[name]
        if pa.kind != pb.kind and (pa.count == 0 or pb.count == 0):
            pa, pb = (_as_categorical(pa), _as_categorical(pb))
        if isinstance(pa, NumericProfile) and isinstance(pb, NumericProfile):
            out[name] = _merge_numeric(pa, pb, a.sample_size, a.seed, name)
        elif isinstance(pa, CategoricalProfile) and isinstance(pb, CategoricalProfile):
            cats = dict(pa.categories)
            for c, n in pb.categories.items():
                cats[c] = cats.get(c, 0) + n
            out[name] = CategoricalProfile(
                pa.count + pb.count,
                pa.nulls + pb.nulls,
                dict(sorted(cats.items())),
                numeric_source=pa.numeric_source and pb.numeric_source,
            )
        else:
            raise ValidationError(f"column {name!r} is {pa.kind} in one profile and {pb.kind} in the other")
    return ReferenceProfile(out, a.rows + b.rows, a.sample_size, a.seed, a.target, a.prediction)


def _column_from_dict(name: str, d: Mapping[str, Any]) -> ColumnProfile:
    try:
        if d["kind"] == "categorical":
            cats = {str(k): int(v) for k, v in d["categories"].items()}
            return CategoricalProfile(int(d["count"]), int(d["nulls"]), cats, bool(d.get("numeric_source")))
        h = d["histogram"]
        return NumericProfile(
            count=int(d["count"]),
            nulls=int(d["nulls"]),
            mean=float(d["mean"]),
            m2=float(d["m2"]),
            min=None if d["min"] is None else float(d["min"]),
            max=None if d["max"] is None else float(d["max"]),
            edges=_frozen(np.asarray(h["edges"], dtype=float)),
            counts=_frozen(np.asarray(h["counts"], dtype=np.int64)),
            below=int(h["below"]),
            above=int(h["above"]),
            sample=_frozen(np.asarray(d["sample"], dtype=float)),
            sample_keys=_frozen(np.asarray(d["sample_keys"], dtype=np.int64)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"column {name!r}: malformed profile ({type(exc).__name__}: {exc})") from exc


def profile_from_dict(data: Mapping[str, Any]) -> ReferenceProfile:
    """Rebuild a profile from :meth:`ReferenceProfile.to_dict`'s output.

    Example:
        >>> import json, pandas as pd
        >>> p = build_profile(pd.DataFrame({"x": [0.5, 1.5, 2.5]}))
        >>> profile_from_dict(json.loads(json.dumps(p.to_dict()))).to_dict() == p.to_dict()
        True
    """
    if data.get("format") != FORMAT_VERSION:
        raise ValidationError(f"unknown profile format {data.get('format')!r} (expected {FORMAT_VERSION})")
    cols = {str(n): _column_from_dict(str(n), d) for n, d in data["columns"].items()}
    return ReferenceProfile(
        cols,
        int(data["rows"]),
        int(data["sample_size"]),
        int(data["seed"]),
        data["target"],
        data["prediction"],
    )


@task(name="build-reference-profile", cache_policy=NO_CACHE)
def build_profile_task(frame: pd.DataFrame, **options: Any) -> dict[str, Any]:
    """Prefect task: :func:`build_profile` as a JSON-ready dict (to store with a model version)."""
    return build_profile(frame, **options).to_dict()


@task(name="merge-reference-profiles", cache_policy=NO_CACHE)
def merge_profiles_task(profiles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Prefect task: merge chunk profiles (dicts, e.g. one per Dask partition) into one."""
    if not profiles:
        raise ValidationError("no profiles to merge")
    merged = profile_from_dict(profiles[0])
    for p in profiles[1:]:
        merged = merge_profiles(merged, profile_from_dict(p))
    return merged.to_dict()
