"""Endpoint records and the checks on them: variants, canary plans, endpoints, events, policies.

The frozen records the endpoint store returns (:class:`Endpoint` with its
:class:`Variant` s and policy settings, :class:`CanaryPlan`,
:class:`EndpointEvent`), the :class:`VariantSpec` callers pass in, the policy
and role names, and the validation every change runs before it touches the
database (names, weights, shadow percentage, which live variants a policy
takes), plus the summary of an endpoint written to the audit log.

Example:
    >>> from storage.endpoints.records import CanaryPlan, check_policy, VariantSpec
    >>> CanaryPlan(step=1).weight
    25.0
    >>> check_policy("ab", [VariantSpec("a", "fraud", "1")])
    Traceback (most recent call last):
    ...
    storage.errors.ValidationError: policy 'ab' takes two or more live variants, got ['a']
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from storage.errors import NotFoundError, ValidationError
from storage.registry.records import Record
from storage.validation import check_name

POLICIES = ("single", "ab", "canary", "shadow", "blue_green")
LIVE, SHADOW = "live", "shadow"
DEFAULT_CANARY_STEPS = (5, 25, 50, 100)
#: Below this canary p99 (ms) the ratio to the stable p99 is not judged.
DEFAULT_P99_FLOOR_MS = 25.0
STABLE, CANARY = "stable", "canary"
BLUE, GREEN = "blue", "green"

__all__ = [
    "BLUE",
    "CANARY",
    "DEFAULT_CANARY_STEPS",
    "GREEN",
    "LIVE",
    "POLICIES",
    "SHADOW",
    "STABLE",
    "CanaryPlan",
    "Endpoint",
    "EndpointEvent",
    "Variant",
    "VariantSpec",
    "audit_summary",
    "check_label",
    "check_percent",
    "check_policy",
    "check_spec",
    "check_weight",
]


@dataclass(frozen=True)
class VariantSpec:
    """A variant to create: name, model, version reference, weight (percent), role."""

    name: str
    model: str
    version: str
    weight: float = 100.0
    role: str = LIVE


@dataclass(frozen=True)
class Variant(Record):
    """A stored variant of an endpoint."""

    id: int
    name: str
    model: str
    version: str
    weight: float
    role: str


@dataclass(frozen=True)
class CanaryPlan(Record):
    """A canary plan and its state.

    Attributes:
        steps: Canary weights in percent, increasing, ending at 100.
        max_error_rate_diff: Largest allowed canary error rate minus stable error rate.
        max_p99_ratio: Largest allowed canary p99 latency over stable p99 latency; it only
            counts when the canary's p99 is above ``p99_floor_ms``.
        min_requests: Requests the canary needs at a step before it is judged.
        step: Index of the current step (-1 before the first).
        status: ``running``, ``completed``, ``rolled_back`` or ``idle``.
        step_started_at: ISO time the current step began (stats are read from then).
        max_p99_ms: Absolute latency target: a canary p99 above it is a rollback, whatever
            the stable variant does (None: no target).
        p99_floor_ms: Below this canary p99 the ratio to stable is not judged: 0.4 ms against
            10 ms is 25x, and inside every latency budget.
    """

    steps: tuple[int, ...] = DEFAULT_CANARY_STEPS
    max_error_rate_diff: float = 0.02
    max_p99_ratio: float = 1.5
    min_requests: int = 20
    step: int = -1
    status: str = "idle"
    step_started_at: str | None = None
    max_p99_ms: float | None = None
    p99_floor_ms: float = DEFAULT_P99_FLOOR_MS

    def __post_init__(self) -> None:
        steps = tuple(int(s) for s in self.steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValidationError(f"canary steps {list(self.steps)} must increase within 1..100")
        if steps[-1] != 100:
            raise ValidationError(f"canary steps {list(steps)} must end at 100")
        if not self.max_error_rate_diff >= 0 or not self.max_p99_ratio > 0 or self.min_requests < 0:
            raise ValidationError(
                "canary thresholds must be max_error_rate_diff >= 0, max_p99_ratio > 0, min_requests >= 0"
            )
        if (self.max_p99_ms is not None and not self.max_p99_ms > 0) or not self.p99_floor_ms >= 0:
            raise ValidationError("canary latency limits must be max_p99_ms > 0 and p99_floor_ms >= 0")
        object.__setattr__(self, "steps", steps)

    @property
    def weight(self) -> float:
        """The canary weight of the current step (0 before the first step or after a rollback)."""
        if self.status == "rolled_back" or self.step < 0:
            return 0.0
        return float(self.steps[min(self.step, len(self.steps) - 1)])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CanaryPlan:
        """Read a plan from its stored JSON form."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "steps" in known:
            known["steps"] = tuple(known["steps"])
        return cls(**known)


@dataclass(frozen=True)
class Endpoint(Record):
    """An endpoint with its policy, variants and policy settings."""

    id: int
    name: str
    policy: str
    revision: int
    variants: tuple[Variant, ...]
    settings: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def live(self) -> tuple[Variant, ...]:
        """Variants that answer requests (in creation order)."""
        return tuple(v for v in self.variants if v.role == LIVE)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        """Variants that get mirrored copies of requests."""
        return tuple(v for v in self.variants if v.role == SHADOW)

    @property
    def shadow_percent(self) -> float:
        """Percentage of requests mirrored to the shadow variants."""
        return float(self.settings.get("shadow_percent", 0.0))

    @property
    def canary(self) -> CanaryPlan | None:
        """The canary plan, for a canary endpoint."""
        data = self.settings.get("canary")
        return CanaryPlan.from_json(data) if data else None

    @property
    def live_colour(self) -> str | None:
        """The live slot of a blue-green endpoint."""
        return self.settings.get("live")

    def variant(self, name: str) -> Variant:
        """One variant by name."""
        for v in self.variants:
            if v.name == name:
                return v
        raise NotFoundError(f"endpoint {self.name!r} has no variant {name!r}")

    def weights(self) -> dict[str, float]:
        """Live variant weights by name."""
        return {v.name: v.weight for v in self.live}


@dataclass(frozen=True)
class EndpointEvent(Record):
    """One recorded step or decision on an endpoint."""

    id: int
    endpoint: str
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]


def check_weight(name: str, weight: float) -> float:
    """A variant weight as a float, if it is a percentage (0 to 100)."""
    value = float(weight)
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValidationError(f"variant {name!r} weight {weight!r} must be between 0 and 100 (percent)")
    return value


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_label(name: str, kind: str) -> str:
    """``name`` if it is a valid endpoint or variant name (``kind`` says which)."""
    if not isinstance(name, str) or not _LABEL.match(name):
        raise ValidationError(f"{kind} name {name!r} is invalid: use letters, digits, '_', '-', '.' (max 64)")
    return name


def check_spec(spec: VariantSpec) -> VariantSpec:
    """A variant spec with a valid name, model, version reference, role and weight."""
    check_label(spec.name, "variant")
    check_name("model", spec.model)
    version = str(spec.version).strip()
    if not version:
        raise ValidationError(f"variant {spec.name!r} needs a version reference (a number, @alias or stage)")
    if spec.role not in (LIVE, SHADOW):
        raise ValidationError(f"variant {spec.name!r} role {spec.role!r} must be 'live' or 'shadow'")
    return replace(spec, version=version, weight=check_weight(spec.name, spec.weight))


def check_percent(percent: float) -> float:
    """A shadow percentage as a float, if it is between 0 and 100."""
    value = float(percent)
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValidationError(f"shadow percent {percent!r} must be between 0 and 100")
    return value


def check_policy(policy: str, live: Sequence[VariantSpec]) -> None:
    """Raise ValidationError unless ``live`` are the live variants ``policy`` takes."""
    if policy not in POLICIES:
        raise ValidationError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    names = [v.name for v in live]
    if not live:
        raise ValidationError("an endpoint needs at least one live variant")
    if policy in ("single", "shadow") and len(live) != 1:
        raise ValidationError(f"policy {policy!r} takes exactly one live variant, got {names}")
    if policy == "ab" and len(live) < 2:
        raise ValidationError(f"policy 'ab' takes two or more live variants, got {names}")
    if policy == "canary" and sorted(names) != [CANARY, STABLE]:
        raise ValidationError(f"policy 'canary' takes live variants 'stable' and 'canary', got {names}")
    if policy == "blue_green" and sorted(names) != [BLUE, GREEN]:
        raise ValidationError(f"policy 'blue_green' takes live variants 'blue' and 'green', got {names}")
    if policy != "blue_green" and sum(v.weight for v in live) <= 0:
        raise ValidationError(f"the live variants' weights add up to 0: {names}")


def audit_summary(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the audit log records it: policy, variants and settings."""
    return {
        "policy": endpoint.policy,
        "variants": [
            {"name": v.name, "model": v.model, "version": v.version, "weight": v.weight, "role": v.role}
            for v in endpoint.variants
        ],
        "settings": endpoint.settings,
    }
