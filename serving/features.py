"""Features filled at serving time from the online feature store.

A model version declares the online features it reads in its ``extra``
metadata under ``serving_features`` (:func:`declare_features` checks and
stores it)::

    {"features": ["trips:fare", "trips:rating"],   # group:feature references
     "policy": "reject",                           # or "default" or "flag"
     "defaults": {"fare": 0.0}}                    # per feature name, for "default" and "flag"

Each referenced feature fills the model input of the same name. A request to
such a version carries the entity's join keys (inputs named as the group's
join keys, e.g. ``driver_id``) and may carry any input itself (a request-time
value wins over the store); the server reads the rest from the online store
(SQLite or Redis, ``MLOPS_ONLINE_STORE_URL``) in one lookup per group. What a
value's absence does follows the declared policy:

- ``reject``: a missing value, or one older than its group's TTL, is a 422
  naming the entity and the feature;
- ``default``: it is replaced by the declared default (every feature needs one);
- ``flag``: a stale value is served as it is, a missing one takes its default
  (or is a 422 without one), and the response lists the flagged rows.

The prediction log records the values used (the model's inputs after
filling) and, per row, the entity key; the response's ``parameters.features``
names the feature versions read and the flagged rows.

Example:
    >>> check_declaration({"features": ["trips:fare"], "policy": "reject"})["policy"]
    'reject'
    >>> check_declaration({"features": ["trips:fare"], "policy": "default"})
    Traceback (most recent call last):
    ...
    storage.errors.ValidationError: serving_features: policy 'default' needs a default for feature 'fare'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from serving.protocol import Batch, InputSpec, RequestError, convert_column
from storage.errors import ValidationError
from storage.features.online import entity_key
from storage.features.store import FeatureStore
from storage.registry.core import Registry

EXTRA_KEY = "serving_features"
POLICIES = ("reject", "default", "flag")


def check_declaration(value: Any) -> dict[str, Any]:
    """A ``serving_features`` declaration, checked (ValidationError naming the problem)."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{EXTRA_KEY} must be an object with 'features', got {type(value).__name__}")
    refs = value.get("features")
    if isinstance(refs, str) or not isinstance(refs, list) or not refs:
        raise ValidationError(
            f"{EXTRA_KEY}: 'features' must be a non-empty list of 'group:feature' references"
        )
    names = []
    for ref in refs:
        if not isinstance(ref, str) or ":" not in ref or ref.endswith(":*"):
            raise ValidationError(f"{EXTRA_KEY}: feature {ref!r} must be one 'group:feature[@version]'")
        names.append(ref.split(":", 1)[1].split("@", 1)[0])
    policy = value.get("policy", "reject")
    if policy not in POLICIES:
        raise ValidationError(f"{EXTRA_KEY}: policy {policy!r} is not one of {', '.join(POLICIES)}")
    defaults = value.get("defaults") or {}
    if not isinstance(defaults, Mapping) or any(k not in names for k in defaults):
        raise ValidationError(
            f"{EXTRA_KEY}: 'defaults' must map feature names ({', '.join(names)}) to values"
        )
    if policy == "default":
        for name in names:
            if name not in defaults:
                raise ValidationError(f"{EXTRA_KEY}: policy 'default' needs a default for feature {name!r}")
    return {"features": list(refs), "policy": policy, "defaults": dict(defaults)}


def declare_features(
    registry: Registry,
    model: str,
    version: int | str,
    features: list[str],
    *,
    policy: str = "reject",
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Declare the online features a version reads (stored in its ``extra``, audited); returns it."""
    declaration = check_declaration(
        {"features": features, "policy": policy, "defaults": dict(defaults or {})}
    )
    signature = registry.get_version(model, version).signature or {}
    inputs = {f["name"] for f in signature.get("inputs", [])}
    for ref in declaration["features"]:
        name = ref.split(":", 1)[1].split("@", 1)[0]
        if name not in inputs:
            raise ValidationError(
                f"feature {ref!r} fills no input of {model} version {version}: no input {name!r}"
            )
    registry.set_version_extra(model, version, EXTRA_KEY, declaration)
    return declaration


@dataclass(frozen=True)
class Plan:
    """How one version's requests are filled: the request spec, the features, the policy."""

    request_spec: InputSpec
    model_spec: InputSpec
    join_keys: tuple[str, ...]
    features: tuple[str, ...]  # references, in declaration order
    columns: tuple[str, ...]  # the input each fills
    policy: str
    defaults: dict[str, Any]
    #: Per group: its name, join keys, TTL in µs (None: never stale) and (input, stored column) pairs.
    groups: tuple[tuple[str, tuple[str, ...], int | None, tuple[tuple[str, str], ...]], ...] = ()


@dataclass
class Filled:
    """A filled batch, the feature versions read, the flagged rows and each row's entity key."""

    batch: Batch
    refs: list[str]
    flagged: list[dict[str, Any]]
    entity_keys: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """What the response reports: ``{"refs": [...], "flagged": [{"row", "feature", "status"}]}``."""
        return {"refs": self.refs, "flagged": self.flagged}


class FeatureFiller:
    """Fills declared features of served versions from the online store (see the module docs).

    Args:
        registry: Where versions' declarations are read.
        open_store: Opens the feature store on first use.
        refresh_s: How long a version's declaration is reused before it is read again.
    """

    def __init__(
        self, registry: Registry, open_store: Callable[[], FeatureStore], *, refresh_s: float = 1.0
    ) -> None:
        self.registry = registry
        self._open_store = open_store
        self._store: FeatureStore | None = None
        self.refresh_s = refresh_s
        self._plans: dict[tuple[str, int], tuple[Plan | None, float]] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> FeatureStore:
        """The feature store (opened on first use)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._open_store()
        return self._store

    def close(self) -> None:
        """Close the feature store if it was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def cached_plan(self, model: str, version: int) -> tuple[bool, Plan | None]:
        """``(known, plan)`` without touching the database: serving threads ask this first."""
        found = self._plans.get((model, version))
        if found is None or found[1] <= time.monotonic():
            return False, None
        return True, found[0]

    def plan(self, model: str, version: int, spec: InputSpec) -> Plan | None:
        """The version's fill plan (None: it declares no features); a bad declaration is a 503."""
        known, plan = self.cached_plan(model, version)
        if known:
            return plan
        extra = self.registry.get_version(model, version).extra or {}
        plan = None
        if EXTRA_KEY in extra:
            try:
                plan = self._build(extra[EXTRA_KEY], spec)
            except Exception as exc:
                raise RequestError(
                    f"{model} version {version} declares serving features badly: {exc}", 503
                ) from None
        self._plans[(model, version)] = (plan, time.monotonic() + self.refresh_s)
        return plan

    def _build(self, declared: Any, spec: InputSpec) -> Plan:
        declaration = check_declaration(declared)
        specs = self.store.resolve(declaration["features"])
        keys: list[str] = []
        refs, columns = [], []
        groups = []
        for group, feats in specs:
            keys.extend(k for k in group.join_keys if k not in keys)
            ttl = group.ttl_seconds * 1_000_000 if group.ttl_seconds else None
            groups.append((group.name, tuple(group.join_keys), ttl, tuple((f.name, f.column) for f in feats)))
            for f in feats:
                if f.name not in spec.types:
                    raise ValidationError(
                        f"feature {f.ref} fills no input: the model has no input {f.name!r}"
                    )
                refs.append(f"{group.name}:{f.name}@{f.version}")
                columns.append(f.name)
        extra_keys = tuple(k for k in keys if k not in spec.types)
        request_spec = replace(  # the version's limits (string bytes, elements) hold for the request too
            spec,
            names=(*extra_keys, *spec.names),
            types={**{k: "key" for k in extra_keys}, **spec.types},
            optional=frozenset(columns),
        )
        return Plan(
            request_spec, spec, tuple(keys), tuple(refs), tuple(columns),
            declaration["policy"], declaration["defaults"], tuple(groups),
        )  # fmt: skip

    def fill(self, plan: Plan, batch: Batch) -> Filled:
        """The model's batch: request values, then online values, then the policy for what is left."""
        n = batch.rows
        key_values = {k: batch.columns[k].tolist() for k in plan.join_keys}
        entity_rows = [{k: key_values[k][i] for k in plan.join_keys} for i in range(n)]
        found, statuses = self._read(plan, entity_rows)
        out = {name: batch.columns[name] for name in plan.model_spec.names if name not in plan.columns}
        flagged: list[dict[str, Any]] = []
        for name, ref in zip(plan.columns, plan.features, strict=True):
            given = batch.columns.get(name)
            values: list[Any] = [None] * n if given is None else given.tolist()
            for i in range(n):
                if values[i] is not None and values[i] == values[i]:  # the request's value (not NaN) wins
                    continue
                status = statuses[i].get(name, "missing")
                value = found[i].get(name)
                if status == "present":
                    values[i] = value
                    continue
                values[i] = self._absent(plan, name, ref, status, value, entity_rows[i], i, flagged)
            column = np.empty(n, dtype=object)
            column[:] = values
            spec = plan.model_spec
            out[name] = convert_column(
                column, spec.types[name], f"feature {ref}", nullable=name in spec.nullable
            )
        columns = {name: out[name] for name in plan.model_spec.names}
        return Filled(Batch(columns, n), list(plan.features), flagged, entity_rows)

    def _read(
        self, plan: Plan, entity_rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Values and statuses (present, stale, missing) per row: one online read per group.

        The plan holds the resolved groups, so the hot path never touches the metadata database.
        """
        now_us = time.time_ns() // 1000
        online = self.store.online
        found: list[dict[str, Any]] = [{} for _ in entity_rows]
        statuses: list[dict[str, str]] = [{} for _ in entity_rows]
        for group, join_keys, ttl_us, feats in plan.groups:
            keys = [entity_key([row[k] for k in join_keys]) for row in entity_rows]
            for i, got in enumerate(online.read(group, keys)):
                for name, column in feats:
                    if got is None:
                        statuses[i][name] = "missing"
                        continue
                    ts, values = got
                    value = found[i][name] = values.get(column)
                    if ttl_us is not None and now_us - ts > ttl_us:
                        statuses[i][name] = "stale"
                    else:
                        statuses[i][name] = "present" if value is not None else "missing"
        return found, statuses

    @staticmethod
    def _absent(
        plan: Plan, name: str, ref: str, status: str, value: Any, entity: dict[str, Any], row: int,
        flagged: list[dict[str, Any]],
    ) -> Any:  # fmt: skip
        who = ", ".join(f"{k}={v!r}" for k, v in entity.items())
        if plan.policy == "reject":
            why = "is older than its group's TTL" if status == "stale" else "is not in the online store"
            raise RequestError(f"entity {who}: feature {ref} {why} (policy: reject)", 422)
        if plan.policy == "flag":
            flagged.append({"row": row, "feature": name, "status": status})
            if status == "stale" and value is not None:
                return value
        if name in plan.defaults:
            return plan.defaults[name]
        raise RequestError(
            f"entity {who}: feature {ref} is {status} and has no default (policy: {plan.policy})", 422
        )
