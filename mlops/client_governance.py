"""The governance calls of :class:`mlops.client.Client`: audit, lineage, reports, attestations, erasure.

Each method answers with the record the local store returns
(:class:`~storage.audit.AuditEntry`, :class:`~storage.governance.lineage.DataAsset`,
:class:`~storage.governance.reports.StoredReport`, ...), rebuilt from the
service's JSON, under the store's own method name where there is one.

Example:
    >>> from mlops.client import Client
    >>> issubclass(Client, GovernanceMixin)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from storage.audit import AuditEntry, AuditReport
from storage.errors import IntegrityError
from storage.governance.attestations import Attestation
from storage.governance.lineage import DataAsset
from storage.governance.reports import StoredReport

if TYPE_CHECKING:  # the erasure module loads pyarrow and the feature store: imported on first use
    from storage.governance.erasure import ErasureResult


def _q(value: Any) -> str:
    return quote(str(value), safe="")


def _version_path(model: str, version: int | str) -> str:
    return f"/models/{_q(model)}/versions/{_q(version)}"


class GovernanceMixin:
    """Audit log, data lineage, stored reports, governance report, attestations and erasure."""

    _call: Callable[..., Any]
    _request: Callable[..., httpx.Response]

    # ---------------------------------------------------------------- audit
    def audit_entries(self, **filters: Any) -> list[AuditEntry]:
        """Audit entries in order (``entity_type``, ``entity_id``, ``action``, ``after_seq``, ``limit``)."""
        data = self._call("GET", "/audit", params=filters)
        return [AuditEntry(**e) for e in data["items"]]

    def verify_audit(self) -> AuditReport:
        """Check the audit chain on the service."""
        return AuditReport(**self._call("GET", "/audit/verify"))

    # -------------------------------------------------------------- lineage
    def datasets(self) -> list[DataAsset]:
        """Registered datasets, by name."""
        return [DataAsset.from_dict(d) for d in self._call("GET", "/datasets")["items"]]

    def dataset(self, name: str) -> DataAsset:
        """One registered dataset."""
        return DataAsset.from_dict(self._call("GET", f"/datasets/{_q(name)}"))

    def dataset_lineage(self, name: str) -> dict[str, Any]:
        """A dataset, the feature groups and model versions that used it, and the datasets around it."""
        result: dict[str, Any] = self._call("GET", f"/datasets/{_q(name)}/lineage")
        return result

    def model_lineage(self, model: str) -> dict[str, Any]:
        """Per version: datasets (PII, retention, source), feature groups, run, approvals, stage."""
        result: dict[str, Any] = self._call("GET", f"/models/{_q(model)}/data-lineage")
        return result

    # -------------------------------------------------------------- reports
    def report(self, kind: str, model: str, version: int | str) -> StoredReport:
        """The newest stored report of ``kind`` (``bias_report``, ``compliance:GDPR``...).

        Raises NotFoundError when none is stored (or the version does not exist).
        """
        path = f"{_version_path(model, version)}/reports/{_q(kind)}"
        return StoredReport.from_dict(self._call("GET", path))

    def governance_report(
        self, model: str, version: int | str, *, frameworks: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The governance report of a version (:func:`tasks.governance.report.governance_report`)."""
        params = {"framework": list(frameworks) if frameworks else None}
        path = f"{_version_path(model, version)}/governance"
        result: dict[str, Any] = self._call("GET", path, params=params)
        return result

    def model_card(self, model: str, version: int | str, *, frameworks: Sequence[str] | None = None) -> str:
        """The Markdown model card of a version."""
        params = {"framework": list(frameworks) if frameworks else None}
        return self._request("GET", f"{_version_path(model, version)}/model-card", params=params).text

    def attestations(
        self, *, framework: str | None = None, model: str | None = None, include_expired: bool = False
    ) -> list[Attestation]:
        """Attestations, newest first; by default only those not yet expired."""
        params = {"framework": framework, "model": model, "include_expired": include_expired}
        return [Attestation.from_dict(a) for a in self._call("GET", "/attestations", params=params)["items"]]

    # -------------------------------------------------------------- erasure
    def erase(self, keys: Mapping[str, Any], *, reason: str) -> ErasureResult:
        """Erase an entity everywhere (admin keys); IntegrityError, naming the places, when rows remain.

        The erasure is recorded on the service either way; rerunning it is safe.
        """
        from storage.governance.erasure import ErasureResult

        data = self._call("POST", "/erasures", json={"keys": dict(keys), "reason": reason})
        result = ErasureResult.from_dict(data)
        if not result.verified:
            left = {place: n for place, n in result.remaining.items() if n}
            raise IntegrityError(f"erasure {result.id} left rows behind: {left}")
        return result

    def erasures(self, *, limit: int = 100) -> list[ErasureResult]:
        """Recorded erasures, newest first."""
        from storage.governance.erasure import ErasureResult

        data = self._call("GET", "/erasures", params={"limit": limit})
        return [ErasureResult.from_dict(e) for e in data["items"]]

    def erasure(self, erasure_id: int) -> ErasureResult:
        """One recorded erasure."""
        from storage.governance.erasure import ErasureResult

        return ErasureResult.from_dict(self._call("GET", f"/erasures/{int(erasure_id)}"))
