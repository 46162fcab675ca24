"""The traffic router: which model version answers a request to an endpoint.

Example:
    >>> from storage.db import Database
    >>> from serving.traffic import TrafficRouter
    >>> router = TrafficRouter(Database("sqlite:///:memory:"))
    >>> router.route("no-such-endpoint", "user-1") is None
    True
    >>> router.close()
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database

__all__ = ["Route", "Target", "TrafficRouter"]


@dataclass(frozen=True)
class Target:
    """A model and a version reference (``"3"``, ``"@champion"``, ``"production"``)."""

    model: str
    version: str


@dataclass(frozen=True)
class Route:
    """Where one request goes: the endpoint, the chosen variant, its target, and shadows to mirror to."""

    endpoint: str
    variant: str
    target: Target
    shadows: tuple[Target, ...] = ()


class TrafficRouter:
    """Routes requests to endpoint variants from the endpoint configuration in the metadata DB.

    Args:
        db: The metadata database holding endpoints.
        refresh_s: Longest time a cached configuration is used before re-reading it.
    """

    def __init__(self, db: Database, *, refresh_s: float = 1.0) -> None:
        self.db = db
        self.refresh_s = refresh_s

    def route(self, name: str, request_key: str | None) -> Route | None:
        """The route for one request to endpoint ``name`` (None when no such endpoint exists)."""
        return None

    def observe(self, endpoint: str, variant: str, target: Target, latency_ms: float, ok: bool) -> None:
        """Count one answered request of a variant."""

    def close(self) -> None:
        """Flush counters and stop background work."""
