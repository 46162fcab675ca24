"""The operations calls of :class:`mlops.client.Client`: endpoints, alerts, features and API keys.

Endpoints are read only (traffic changes go through the model server's admin
API); an alert is resolved with a contributor or admin key; feature
definitions are read only. Each method answers with the local store's record
(:class:`~storage.endpoints.records.Endpoint`, :class:`~storage.monitoring.alerts.Alert`,
:class:`~storage.features.records.FeatureGroup`, ...), rebuilt from the service's JSON.

Example:
    >>> from mlops.client import Client
    >>> issubclass(Client, OperationsMixin)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from storage.endpoints import Endpoint, EndpointEvent
from storage.features.records import Entity, Feature, FeatureGroup
from storage.monitoring.alerts import Alert


def _q(value: Any) -> str:
    return quote(str(value), safe="")


def _entity(data: dict[str, Any]) -> Entity:
    return Entity(**{**data, "join_keys": tuple(data["join_keys"])})


def _group(data: dict[str, Any]) -> FeatureGroup:
    return FeatureGroup(**{**data, "join_keys": tuple(data["join_keys"])})


def _feature(data: dict[str, Any]) -> Feature:
    return Feature(**{k: v for k, v in data.items() if k != "ref"})


class OperationsMixin:
    """Serving endpoints, monitoring alerts, feature definitions and statistics, API keys."""

    _call: Callable[..., Any]
    _request: Callable[..., httpx.Response]

    # ------------------------------------------------------------ endpoints
    def endpoints(self) -> list[Endpoint]:
        """Every serving endpoint, by name."""
        return [Endpoint.from_dict(e) for e in self._call("GET", "/endpoints")["items"]]

    def endpoint(self, name: str) -> Endpoint:
        """One endpoint with its policy, variants and settings."""
        return Endpoint.from_dict(self._call("GET", f"/endpoints/{_q(name)}"))

    def endpoint_events(
        self, name: str, *, kind: str | None = None, limit: int = 1000
    ) -> list[EndpointEvent]:
        """Recorded steps and decisions of an endpoint, oldest first."""
        data = self._call("GET", f"/endpoints/{_q(name)}/events", params={"kind": kind, "limit": limit})
        return [EndpointEvent.from_dict(e) for e in data["items"]]

    def endpoint_stats(self, name: str, *, since_seconds: float | None = None) -> dict[str, dict[str, Any]]:
        """Per-variant traffic summaries (requests, errors, latency percentiles) by variant name."""
        data = self._call("GET", f"/endpoints/{_q(name)}/stats", params={"since_seconds": since_seconds})
        result: dict[str, dict[str, Any]] = data["variants"]
        return result

    # --------------------------------------------------------------- alerts
    def alerts(self, *, model: str | None = None, status: str | None = None, limit: int = 200) -> list[Alert]:
        """Alerts, newest first, filtered by model and status (``open``, ``resolved``)."""
        data = self._call("GET", "/alerts", params={"model": model, "status": status, "limit": limit})
        return [Alert.from_dict(a) for a in data["items"]]

    def resolve_alert(self, alert_id: int) -> Alert:
        """Close an alert as the key's owner (contributor or admin keys)."""
        return Alert.from_dict(self._call("POST", f"/alerts/{int(alert_id)}/resolve"))

    # ------------------------------------------------------------- features
    def feature_entities(self) -> list[Entity]:
        """Feature entities and their join keys, by name."""
        return [_entity(e) for e in self._call("GET", "/features/entities")["items"]]

    def feature_entity(self, name: str) -> Entity:
        """One entity."""
        return _entity(self._call("GET", f"/features/entities/{_q(name)}"))

    def feature_groups(self) -> list[FeatureGroup]:
        """Feature groups, by name."""
        return [_group(g) for g in self._call("GET", "/features/groups")["items"]]

    def feature_group(self, name: str) -> FeatureGroup:
        """One feature group."""
        return _group(self._call("GET", f"/features/groups/{_q(name)}"))

    def features(self, group: str | None = None, *, all_versions: bool = False) -> list[Feature]:
        """Features (the newest version of each unless ``all_versions``), by group and name."""
        data = self._call("GET", "/features", params={"group": group, "all_versions": all_versions})
        return [_feature(f) for f in data["items"]]

    def feature_lineage(self, group: str) -> dict[str, Any]:
        """Source → group → feature versions → the model versions trained on them."""
        result: dict[str, Any] = self._call("GET", f"/features/groups/{_q(group)}/lineage")
        return result

    def feature_statistics(self, group: str, *, kind: str | None = None) -> dict[str, dict[str, Any]]:
        """The newest stored statistics of each feature of a group (``reference``, ``window`` or either)."""
        data = self._call("GET", f"/features/groups/{_q(group)}/statistics", params={"kind": kind})
        result: dict[str, dict[str, Any]] = data["features"]
        return result

    # ----------------------------------------------------------------- keys
    def create_key(self, owner: str, role: str, *, description: str = "") -> dict[str, Any]:
        """A new key (admin keys); the answer's ``key`` is the secret, shown once."""
        result: dict[str, Any] = self._call(
            "POST", "/keys", json={"owner": owner, "role": role, "description": description}
        )
        return result

    def list_keys(self, *, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Every key (admin keys)."""
        result: list[dict[str, Any]] = self._call(
            "GET", "/keys", params={"include_revoked": include_revoked}
        )["items"]
        return result

    def revoke_key(self, key_id: int) -> dict[str, Any]:
        """Revoke a key (admin keys)."""
        result: dict[str, Any] = self._call("DELETE", f"/keys/{int(key_id)}")
        return result
