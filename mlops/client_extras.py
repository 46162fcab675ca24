"""Calls of the platform service that ``mlops`` and the registry tasks need beyond ``Client``.

:class:`ClientExtras` is a mixin over ``Client`` (it only calls the service
through ``Client._call``); :class:`ServiceClient` is the client with it mixed
in, which ``mlops`` (with ``MLOPS_API_URL``) and
:func:`tasks.registry.steps.open_registry` (with a service configured) use.

Example:
    >>> import tempfile
    >>> from blocks.settings import MlopsSettings
    >>> from service.app import create_app
    >>> from service.server import running_service
    >>> from storage.artifacts import ArtifactRef
    >>> app = create_app(settings=MlopsSettings(home=tempfile.mkdtemp()))
    >>> secret, _ = app.state.keys.create("ana", "admin", actor="setup")
    >>> with running_service(app) as url, ServiceClient(url, secret) as client:
    ...     ref = client.upload(b"weights")
    ...     client.upload(ArtifactRef(ref["sha256"], ref["size"])) == ref
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlops.client import Client
from storage.artifacts import ArtifactRef
from storage.registry.approvals import ApprovalRequest
from storage.registry.records import ModelVersion

if TYPE_CHECKING:
    _Base = Client
else:
    _Base = object


class ClientExtras(_Base):
    """Calls of the service that :class:`~mlops.client.Client` does not make (yet)."""

    def request_promotion(
        self, model: str, version: int | str, stage: str, *, reason: str = "", policy_block: str | None = None
    ) -> ApprovalRequest:
        """Open a promotion request as the key's owner; ``policy_block`` names a policy the service loads."""
        body = {"model": model, "version": str(version), "stage": stage, "reason": reason}
        if policy_block:
            body["policy_block"] = policy_block
        return ApprovalRequest.from_dict(self._call("POST", "/approvals", json=body))

    def upload(self, source: bytes | str | Path | ArtifactRef) -> dict[str, Any]:
        """Store a file's content in the service's store; a stored :class:`ArtifactRef` is passed as it is."""
        if isinstance(source, ArtifactRef):
            return {"sha256": source.sha256, "size": source.size}
        return super().upload(source)

    def create_version(
        self,
        model: str,
        *,
        framework: str,
        artifacts: Mapping[str, bytes | str | Path | ArtifactRef] | None = None,
        **fields: Any,
    ) -> ModelVersion:
        """Upload the files, then register the next version: the registry's arguments and file sources."""
        # upload() above takes every source the registry takes, ArtifactRef included
        return super().create_version(model, framework=framework, artifacts=cast(Any, artifacts), **fields)


class ServiceClient(ClientExtras, Client):
    """The platform service's client with :class:`ClientExtras`."""
