"""Feature store records: names, types, lifecycle rules, and the entity/group/feature dataclasses.

Example:
    >>> from storage.features.records import Feature, check_identifier, parse_ref
    >>> Feature("trips", "fare", 2, "float", "active").column
    'fare__v2'
    >>> parse_ref("trips:fare@2")
    ('trips', 'fare', 2)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from storage.errors import ValidationError

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
RESERVED = frozenset({"date", "entity_key", "event_ts", "payload"})
DTYPES = ("int", "float", "string", "bool", "array", "json")
STATUSES = ("draft", "active", "deprecated", "archived")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "archived"}),
    "active": frozenset({"deprecated"}),
    "deprecated": frozenset({"active", "archived"}),
    "archived": frozenset(),
}
_REF = re.compile(r"^(?P<group>[^:@]+):(?P<feature>[^:@]+)(?:@(?P<version>\d+))?$")


class FeatureDeprecatedWarning(UserWarning):
    """A deprecated feature was read: it still works, but will be archived."""


def check_identifier(name: str, what: str = "name") -> str:
    """Return ``name`` when it is a safe identifier, else raise ValidationError.

    Example:
        >>> check_identifier("fare_amount")
        'fare_amount'
        >>> check_identifier("x; DROP TABLE features")
        Traceback (most recent call last):
        ...
        storage.errors.ValidationError: name 'x; DROP TABLE features' is not a valid identifier: ...
    """
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ValidationError(
            f"{what} {name!r} is not a valid identifier: use a letter, then letters, digits or _ (max 63)"
        )
    if name.lower() in RESERVED:
        raise ValidationError(f"{what} {name!r} is reserved by the feature store")
    return name


def quote(name: str) -> str:
    """A validated identifier, double-quoted for SQL."""
    return '"' + check_identifier(name) + '"'


@dataclass(frozen=True)
class Entity:
    """An entity: the thing features describe, found by its join keys."""

    name: str
    join_keys: tuple[str, ...]
    description: str = ""
    owner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {**asdict(self), "join_keys": list(self.join_keys)}


@dataclass(frozen=True)
class FeatureGroup:
    """A feature group: the unit of ingestion and materialization."""

    name: str
    entity: str
    join_keys: tuple[str, ...]
    event_time_column: str
    available_time_column: str | None = None
    ttl_seconds: int | None = None
    source: str = ""
    description: str = ""
    owner: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {**asdict(self), "join_keys": list(self.join_keys), "tags": dict(self.tags)}


@dataclass(frozen=True)
class Feature:
    """One version of a feature; ``column`` is where its values are stored."""

    group: str
    name: str
    version: int
    dtype: str
    status: str
    description: str = ""
    source: str = ""
    transformation: str = ""
    owner: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``group:name@version``."""
        return f"{self.group}:{self.name}@{self.version}"

    @property
    def column(self) -> str:
        """The stored column: the name for version 1, ``name__vN`` after."""
        return self.name if self.version == 1 else f"{self.name}__v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {**asdict(self), "tags": dict(self.tags), "ref": self.ref}


def parse_ref(ref: str, *, allow_star: bool = False) -> tuple[str, str, int | None]:
    """Split ``group:feature[@version]``, validating both names.

    Example:
        >>> parse_ref("trips:fare@2")
        ('trips', 'fare', 2)
    """
    match = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise ValidationError(f"feature reference {ref!r} is malformed: expected group:feature[@version]")
    group = check_identifier(match["group"], "group name")
    name = match["feature"]
    if not (allow_star and name == "*" and match["version"] is None):
        check_identifier(name, "feature name")
    return group, name, int(match["version"]) if match["version"] else None
