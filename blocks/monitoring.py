"""The monitoring configuration: data-quality and service-level thresholds, and its Prefect Block.

``MonitoringConfig`` is what ``check-drift`` and ``check-operations`` judge a
window against, besides the drift statistics themselves:

* ``quality`` (:class:`QualityThresholds`): per-column null rate above the
  reference's, values outside the reference range, categories the reference
  never saw, and schema changes (a column missing, a type changed);
* ``operations`` (:class:`OperationsThresholds`): latency p95/p99 and error
  rate per endpoint, with per-endpoint overrides.

Every threshold is a :class:`Limit`: above ``warning`` raises a warning alert,
above ``critical`` (when set) a critical one. Unknown keys are errors, so a typo
never falls back to a default. Save a :class:`MonitoringConfigBlock` in the
Prefect UI and pass its name to the flows as ``config_block``, or pass the dict
as ``config``.

Example:
    >>> limits = {"null_rate_increase": {"warning": 0.1, "critical": 0.25}}
    >>> cfg = MonitoringConfig.model_validate({"quality": limits})
    >>> cfg.quality.null_rate_increase.severity(0.3), cfg.quality.null_rate_increase.severity(0.05)
    ('critical', None)
    >>> cfg.operations.for_endpoint("fraud").p99_ms.warning
    500.0
    >>> MonitoringConfig.model_validate({"operations": {"endpoints": {"fraud": {"p99_ms": {"warning": 50}}}}}
    ...     ).operations.for_endpoint("fraud").p99_ms.warning
    50.0
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["critical", "warning"]
_EPS = 1e-12


class Limit(BaseModel):
    """A threshold pair: above ``warning`` is a warning, above ``critical`` (if set) is critical."""

    model_config = ConfigDict(extra="forbid")

    warning: float = Field(ge=0)
    critical: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Limit:
        if self.critical is not None and self.critical < self.warning:
            raise ValueError(f"critical {self.critical} is below warning {self.warning}")
        return self

    def severity(self, value: float) -> Severity | None:
        """``critical``, ``warning`` or None (within the limit) for an observed value.

        Limits compare up to 1e-12, so a difference like 0.30 - 0.05 is at the limit 0.25
        as written, not above it.
        """
        if self.critical is not None and value > self.critical + _EPS:
            return "critical"
        return "warning" if value > self.warning + _EPS else None


class QualityThresholds(BaseModel):
    """Data-quality limits of a window compared with the reference profile.

    Attributes:
        null_rate_increase: The window's null share of a column minus the reference's.
        out_of_range_share: Share of a numeric column's values below the reference
            minimum or above its maximum.
        unseen_category_share: Share of a categorical column's values the reference never saw.
        schema_severity: Severity of a schema change (a reference column missing from
            every request, or a numeric column arriving as text and vice versa).
        min_rows: Windows with fewer rows are not judged (schema changes still are).
        ignore_columns: Columns never judged.
    """

    model_config = ConfigDict(extra="forbid")

    null_rate_increase: Limit = Field(default_factory=lambda: Limit(warning=0.05, critical=0.25))
    out_of_range_share: Limit = Field(default_factory=lambda: Limit(warning=0.01, critical=0.1))
    unseen_category_share: Limit = Field(default_factory=lambda: Limit(warning=0.01, critical=0.1))
    schema_severity: Severity = "critical"
    min_rows: int = Field(default=20, ge=1)
    ignore_columns: list[str] = Field(default_factory=list)


class ServiceLevels(BaseModel):
    """Latency (ms, of answered requests) and error-rate limits of one endpoint."""

    model_config = ConfigDict(extra="forbid")

    p95_ms: Limit | None = None
    p99_ms: Limit | None = Field(default_factory=lambda: Limit(warning=500.0, critical=2000.0))
    error_rate: Limit | None = Field(default_factory=lambda: Limit(warning=0.01, critical=0.05))
    min_requests: int = Field(default=20, ge=1)


class OperationsThresholds(ServiceLevels):
    """Service levels for every endpoint, with per-endpoint overrides (keys an override sets win)."""

    endpoints: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_overrides(self) -> OperationsThresholds:
        for name in self.endpoints:
            self.for_endpoint(name)
        return self

    def for_endpoint(self, endpoint: str) -> ServiceLevels:
        """The limits of ``endpoint``: the defaults, overridden by its entry in ``endpoints``."""
        base = self.model_dump(exclude={"endpoints"})
        return ServiceLevels.model_validate({**base, **self.endpoints.get(endpoint, {})})


class MonitoringConfig(BaseModel):
    """Thresholds of the monitoring flows beyond drift."""

    model_config = ConfigDict(extra="forbid")

    quality: QualityThresholds = Field(default_factory=QualityThresholds)
    operations: OperationsThresholds = Field(default_factory=OperationsThresholds)


class MonitoringConfigBlock(Block):
    """The monitoring thresholds, saved once and named in ``check-drift`` / ``check-operations``."""

    _block_type_name = "MLOps Monitoring Config"
    _block_type_slug = "mlops-monitoring-config"
    _description = "Data-quality and service-level thresholds of the monitoring flows."

    config: MonitoringConfig = Field(default_factory=MonitoringConfig)


def resolve_monitoring_config(
    config: dict[str, Any] | MonitoringConfig | None = None, config_block: str | None = None
) -> MonitoringConfig:
    """The config given, else the saved block's, else the defaults."""
    if isinstance(config, MonitoringConfig):
        return config
    if config is not None:
        return MonitoringConfig.model_validate(config)
    if config_block:
        loaded = MonitoringConfigBlock.load(config_block)
        assert isinstance(loaded, MonitoringConfigBlock)
        return loaded.config
    return MonitoringConfig()
