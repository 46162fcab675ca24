"""What every monitoring check does with its findings: raise alerts, emit events, resolve, notify.

A check hands over its findings as ``(severity, subject, message)``;
:func:`record_findings` raises (or counts) one alert each, emits the check's
Prefect event for every new one (when a Prefect API is configured), resolves
the version's open alerts of the same kind that the check no longer finds
(when the check saw enough data to judge), and starts the notifications
(``tasks.monitoring.notify``) in the background.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a")
    >>> _ = reg.create_model("m"); _ = reg.create_version("m", framework="sklearn")
    >>> new = record_findings(reg, "m", 1, kind="latency", findings=[("warning", "m:p99", "p99 612 ms")])
    >>> [a["subject"] for a in new]
    ['m:p99']
    >>> _ = record_findings(reg, "m", 1, kind="latency", findings=[])  # cleared: resolved
    >>> AlertStore(reg).open_alerts("m")
    []
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.events import emit_event

from storage.monitoring.alerts import AlertStore
from storage.registry.core import Registry
from tasks.monitoring.notify import notify_alerts
from tasks.registry.promotion import prefect_api_configured

__all__ = ["record_findings"]


def record_findings(
    registry: Registry,
    model: str,
    version: int,
    *,
    kind: str,
    findings: Sequence[tuple[str, str, str]],
    event: str | None = None,
    event_subject_key: str = "subject",
    resolve_cleared: bool = True,
    keep: Sequence[str] = (),
    notify: bool = True,
) -> list[dict[str, Any]]:
    """Raise one alert per finding; returns the new ones as dicts (see the module docs).

    ``keep`` names subjects the check could not judge this time: their open
    alerts stay open.
    """
    store, new_alerts = AlertStore(registry), []
    for severity, subject, message in findings:
        alert = store.raise_alert(
            model, version, kind=kind, severity=severity, subject=subject, message=message
        )
        if not alert.new:
            continue
        new_alerts.append(alert.to_dict())
        if event and prefect_api_configured():
            emit_event(
                event,
                resource={
                    "prefect.resource.id": f"mlops.model-version.{model}.{version}",
                    "mlops.model": model,
                },
                payload={"severity": severity, event_subject_key: subject, "message": message, "kind": kind},
            )
    if resolve_cleared:
        store.resolve_cleared(model, version, kind=kind, still_firing=[*keep, *(s for _, s, _ in findings)])
    if notify:
        notify_alerts(registry)
    return new_alerts
