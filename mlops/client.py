"""A Python client of the platform service, with the registry's method names.

``Client(url, api_key)`` talks to ``mlops server`` over HTTP (keep-alive,
optionally TLS) and returns the same records as :class:`storage.registry.core.Registry`
(:class:`~storage.registry.records.ModelVersion`, ...), so code written
against the registry runs remotely by swapping the object. Files are streamed
in both directions and checked against their SHA-256. Errors come back as the
platform's own exceptions (``NotFoundError``, ``ValidationError``, ...), with
the service's message. Governance and operations calls come from two mixins
(:mod:`mlops.client_governance`, :mod:`mlops.client_operations`).

Example:
    >>> import tempfile
    >>> from blocks.settings import MlopsSettings
    >>> from service.app import create_app
    >>> from service.server import running_service
    >>> app = create_app(settings=MlopsSettings(home=tempfile.mkdtemp()))
    >>> secret, _ = app.state.keys.create("ana", "admin", actor="setup")
    >>> with running_service(app) as url, Client(url, secret) as client:
    ...     _ = client.create_model("fraud")
    ...     client.create_version("fraud", framework="sklearn", artifacts={"model.bin": b"w"}).number
    1
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from mlops.client_governance import GovernanceMixin
from mlops.client_operations import OperationsMixin
from storage.errors import (
    AccessError,
    AlreadyExistsError,
    IntegrityError,
    MlopsError,
    NotFoundError,
    TransitionError,
    ValidationError,
)
from storage.registry.approvals import ApprovalRequest
from storage.registry.compare import Comparison
from storage.registry.lifecycle import Rollback
from storage.registry.records import AliasMove, Model, ModelVersion, Page, StageMove, VerifyReport

API = "/api/v1"
CHUNK = 1 << 20


def _error(response: httpx.Response) -> MlopsError:
    try:
        message = str(response.json().get("error") or response.text)
    except ValueError:
        message = response.text or response.reason_phrase
    status = response.status_code
    if status in (401, 403):
        return AccessError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        if "checksum" in message or "corrupted" in message:
            return IntegrityError(message)
        if "stage" in message or "transition" in message:
            return TransitionError(message)
        return AlreadyExistsError(message)
    if 400 <= status < 500:
        return ValidationError(message)
    return MlopsError(f"the platform service answered {status}: {message}")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    yield from iter(lambda: handle.read(CHUNK), b"")


class Client(GovernanceMixin, OperationsMixin):
    """The platform service at ``url``, called with ``api_key``.

    Args:
        url: Base URL of ``mlops server`` (``MLOPS_API_URL``).
        api_key: The caller's key (``MLOPS_API_KEY``).
        verify: TLS verification: True, False, or a CA bundle path.
        timeout: Seconds per request (uploads and downloads stream without a total limit).
    """

    def __init__(
        self, url: str, api_key: str | None = None, *, verify: bool | str = True, timeout: float = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url + API, headers=headers, verify=verify, timeout=timeout)
        self._actor: str | None = None

    @classmethod
    def from_env(cls) -> Client:
        """The client ``MLOPS_API_URL``, ``MLOPS_API_KEY`` and ``MLOPS_API_CA_BUNDLE`` describe."""
        url = os.environ.get("MLOPS_API_URL")
        if not url:
            raise ValidationError("MLOPS_API_URL is not set: it names the platform service")
        return cls(url, os.environ.get("MLOPS_API_KEY"), verify=os.environ.get("MLOPS_API_CA_BUNDLE") or True)

    # ------------------------------------------------------------- plumbing
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        params = kwargs.pop("params", None)
        if params is not None:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.http.request(method, path, params=params, **kwargs)
        except httpx.TransportError as exc:
            raise MlopsError(f"the platform service at {self.url} cannot be reached: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    @property
    def actor(self) -> str:
        """The key's owner, as the service records it."""
        if self._actor is None:
            self._actor = str(self.whoami()["owner"])
        return self._actor

    def whoami(self) -> dict[str, Any]:
        """The caller's owner name and role."""
        result: dict[str, Any] = self._call("GET", "/whoami")
        return result

    def health(self) -> dict[str, Any]:
        """The service's health (no key needed)."""
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    # --------------------------------------------------------------- models
    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        owner: str | None = None,
        tags: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Model:
        """Register a model name (the actor is always the key's owner)."""
        body = {"name": name, "description": description, "owner": owner, "tags": dict(tags or {})}
        return Model.from_dict(self._call("POST", "/models", json=body))

    def ensure_model(self, name: str, **details: Any) -> Model:
        """The model, created first when it does not exist yet."""
        try:
            return self.get_model(name)
        except NotFoundError:
            try:
                return self.create_model(name, **details)
            except AlreadyExistsError:
                return self.get_model(name)

    def get_model(self, name: str) -> Model:
        """One model."""
        return Model.from_dict(self._call("GET", f"/models/{_q(name)}"))

    def list_models(
        self,
        *,
        name_contains: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Model]:
        """Models by name, one page at a time."""
        params = {
            "name_contains": name_contains,
            "tag": _tags(tags),
            "page_size": page_size,
            "page_token": page_token,
        }
        data = self._call("GET", "/models", params=params)
        return Page([Model.from_dict(m) for m in data["items"]], data["next_token"])

    def set_model_tag(self, name: str, key: str, value: str, *, actor: str | None = None) -> None:
        """Set a model tag."""
        self._call("PUT", f"/models/{_q(name)}/tags/{_q(key)}", json={"value": str(value)})

    # ------------------------------------------------------------- versions
    def upload(self, source: bytes | str | Path) -> dict[str, Any]:
        """Store a file's (or bytes') content in the service's store; returns its digest and size."""
        if isinstance(source, bytes | bytearray):
            data = bytes(source)
            sha = hashlib.sha256(data).hexdigest()
            if not self._stored(sha):
                self._call("PUT", f"/artifacts/{sha}", content=data)
            return {"sha256": sha, "size": len(data)}
        path = Path(source)
        if not path.is_file():
            raise NotFoundError(f"artifact file {str(path)!r} does not exist")
        sha = _sha256_of(path)
        if not self._stored(sha):
            with path.open("rb") as handle:
                headers = {"Content-Length": str(path.stat().st_size)}
                self._call("PUT", f"/artifacts/{sha}", content=_file_chunks(handle), headers=headers)
        return {"sha256": sha, "size": path.stat().st_size}

    def _stored(self, sha256: str) -> bool:
        return self.http.head(f"/artifacts/{sha256}").status_code == 200

    def create_version(
        self,
        model: str,
        *,
        framework: str,
        artifacts: Mapping[str, bytes | str | Path] | None = None,
        parent_version: int | str | None = None,
        actor: str | None = None,
        **fields: Any,
    ) -> ModelVersion:
        """Upload the files, then register the next version (the registry's arguments)."""
        refs = {name: self.upload(src) for name, src in (artifacts or {}).items()}
        body = {
            "framework": framework,
            "artifacts": refs,
            **{k: v for k, v in fields.items() if v is not None},
        }
        if parent_version is not None:
            body["parent_version"] = str(parent_version)
        return ModelVersion.from_dict(self._call("POST", f"/models/{_q(model)}/versions", json=body))

    def get_version(self, model: str, version: int | str) -> ModelVersion:
        """One version by number, semver, alias, ``latest`` or stage."""
        return ModelVersion.from_dict(self._call("GET", f"/models/{_q(model)}/versions/{_q(str(version))}"))

    def search_versions(
        self,
        *,
        model: str | None = None,
        stage: str | None = None,
        alias: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        metrics: Sequence[Any] = (),
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        """Versions matching every filter, newest first."""
        params = {
            "model": model,
            "stage": stage,
            "alias": alias,
            "tag": _tags(tags),
            "metric": [m if isinstance(m, str) else f"{m.key}{m.op}{m.value}" for m in metrics] or None,
            "page_size": page_size,
            "page_token": page_token,
        }
        data = self._call("GET", "/versions", params=params)
        return Page([ModelVersion.from_dict(v) for v in data["items"]], data["next_token"])

    def list_versions(
        self, model: str, *, stage: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[ModelVersion]:
        """A model's versions, newest first."""
        return self.search_versions(model=model, stage=stage, page_size=page_size, page_token=page_token)

    def all_versions(self, model: str, *, stage: str | None = None) -> list[ModelVersion]:
        """Every version of a model, page by page."""
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self.list_versions(model, stage=stage, page_size=1000, page_token=token)
            found.extend(page.items)
            if (token := page.next_token) is None:
                return found

    def transition_stage(self, model: str, version: int | str, stage: str, **options: Any) -> ModelVersion:
        """Move a version to a stage (admin keys)."""
        options.pop("actor", None)
        body = {"stage": stage, **options}
        path = f"/models/{_q(model)}/versions/{_q(str(version))}/stage"
        return ModelVersion.from_dict(self._call("POST", path, json=body))

    def set_alias(
        self, model: str, alias: str, version: int | str, *, reason: str = "", actor: str | None = None
    ) -> AliasMove:
        """Point an alias at a version (admin keys)."""
        body = {"version": str(version), "reason": reason}
        return AliasMove.from_dict(self._call("PUT", f"/models/{_q(model)}/aliases/{_q(alias)}", json=body))

    def delete_alias(
        self, model: str, alias: str, *, reason: str = "", actor: str | None = None
    ) -> AliasMove:
        """Remove an alias (admin keys)."""
        path = f"/models/{_q(model)}/aliases/{_q(alias)}"
        return AliasMove.from_dict(self._call("DELETE", path, params={"reason": reason}))

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every alias move, oldest first."""
        data = self._call("GET", f"/models/{_q(model)}/aliases", params={"alias": alias})
        return [AliasMove.from_dict(m) for m in data["items"]]

    def stage_history(self, model: str, version: int | str | None = None) -> list[StageMove]:
        """Every stage move, oldest first."""
        params = {"version": None if version is None else str(version)}
        data = self._call("GET", f"/models/{_q(model)}/stages", params=params)
        return [StageMove.from_dict(m) for m in data["items"]]

    def rollback(
        self, model: str, *, stage: str = "production", alias: str = "champion", reason: str = "", **_: Any
    ) -> Rollback:
        """Return the stage and alias to the previous holder (admin keys)."""
        body = {"stage": stage, "alias": alias, "reason": reason}
        return Rollback.from_dict(self._call("POST", f"/models/{_q(model)}/rollback", json=body))

    def set_version_tag(self, model: str, version: int | str, key: str, value: Any, **_: Any) -> None:
        """Set a version tag."""
        path = f"/models/{_q(model)}/versions/{_q(str(version))}/tags/{_q(key)}"
        self._call("PUT", path, json={"value": str(value)})

    def set_version_extra(
        self, model: str, version: int | str, key: str, value: Any, **_: Any
    ) -> ModelVersion:
        """Record something learned about a version after registration."""
        path = f"/models/{_q(model)}/versions/{_q(str(version))}/extra/{_q(key)}"
        return ModelVersion.from_dict(self._call("PUT", path, json={"value": value}))

    def compare(
        self,
        model: str,
        versions: Sequence[int | str],
        *,
        primary: str,
        metrics: Sequence[str] | None = None,
        direction: str = "max",
        min_improvement: float = 0.0,
        baseline: int | str | None = None,
    ) -> Comparison:
        """Versions side by side and the winner by ``primary``."""
        params = {
            "version": [str(v) for v in versions],
            "primary": primary,
            "metric": list(metrics) if metrics else None,
            "direction": direction,
            "min_improvement": min_improvement,
            "baseline": None if baseline is None else str(baseline),
        }
        return Comparison.from_dict(self._call("GET", f"/models/{_q(model)}/compare", params=params))

    def verify_version(self, model: str, version: int | str) -> VerifyReport:
        """Re-hash every file of a version on the service."""
        path = f"/models/{_q(model)}/versions/{_q(str(version))}/verify"
        return VerifyReport.from_dict(self._call("GET", path))

    def lineage(self, model: str, version: int | str | None = None) -> dict[str, Any]:
        """Lineage of one version, or of every version of the model."""
        if version is None:
            result: dict[str, Any] = self._call("GET", f"/models/{_q(model)}/lineage")
        else:
            result = self._call("GET", f"/models/{_q(model)}/versions/{_q(str(version))}/lineage")
        return result

    # ---------------------------------------------------------------- files
    def _stream_file(self, model: str, version: int | str, name: str, out: BinaryIO) -> int:
        path = f"/models/{_q(model)}/versions/{_q(str(version))}/files/{_q(name, safe='/')}"
        digest = hashlib.sha256()
        size = 0
        with self.http.stream("GET", path, follow_redirects=False) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            expected = response.headers.get("x-checksum-sha256", "")
            if response.status_code in (302, 303, 307) and response.headers.get("location"):
                with httpx.stream("GET", response.headers["location"], timeout=self.http.timeout) as signed:
                    signed.raise_for_status()
                    for chunk in signed.iter_bytes(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            else:
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        if expected and digest.hexdigest() != expected:
            raise IntegrityError(
                f"{model} version {version} file {name!r} arrived corrupted: sha256 {digest.hexdigest()} "
                f"is not {expected}"
            )
        return size

    def load_artifact(self, model: str, version: int | str, name: str) -> bytes:
        """One file's bytes, checked against its SHA-256."""
        import io

        buffer = io.BytesIO()
        self._stream_file(model, version, name, buffer)
        return buffer.getvalue()

    def download(self, model: str, version: int | str, name: str, dest: str | Path) -> Path:
        """Stream one file to ``dest`` (atomically: a temporary name, then a rename)."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as out:
                self._stream_file(model, version, name, out)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def export_version(self, model: str, version: int | str, dest: str | Path) -> list[Path]:
        """Every file of a version under ``dest``."""
        from storage.artifacts import validate_artifact_name

        root = Path(dest).absolute()
        mv = self.get_version(model, version)
        written = []
        for art in mv.artifacts:
            path = (root / validate_artifact_name(art.name)).resolve()
            if not path.is_relative_to(root.resolve()):
                raise ValidationError(f"artifact name {art.name!r} escapes {root}")
            written.append(self.download(model, mv.number, art.name, path))
        return written

    # ------------------------------------------------------------ approvals
    def request_promotion(
        self, model: str, version: int | str, stage: str, *, reason: str = ""
    ) -> ApprovalRequest:
        """Open a promotion request (gates are checked by the service)."""
        body = {"model": model, "version": str(version), "stage": stage, "reason": reason}
        return ApprovalRequest.from_dict(self._call("POST", "/approvals", json=body))

    def approvals(
        self, *, status: str | None = None, model: str | None = None, limit: int = 100
    ) -> list[ApprovalRequest]:
        """Requests, newest first."""
        data = self._call("GET", "/approvals", params={"status": status, "model": model, "limit": limit})
        return [ApprovalRequest.from_dict(r) for r in data["items"]]

    def approval(self, request_id: int) -> ApprovalRequest:
        """One request."""
        return ApprovalRequest.from_dict(self._call("GET", f"/approvals/{int(request_id)}"))

    def decide(self, request_id: int, decision: str, comment: str = "") -> tuple[ApprovalRequest, str]:
        """Approve or reject as the key's owner; returns the request and what happened to a waiting run."""
        if decision not in ("approve", "reject"):
            raise ValidationError(f"decision {decision!r} is not 'approve' or 'reject'")
        data = self._call("POST", f"/approvals/{int(request_id)}/{decision}", json={"comment": comment})
        return ApprovalRequest.from_dict(data), str(data.get("flow_run", "none"))

    def approve(self, request_id: int, comment: str = "") -> ApprovalRequest:
        """Approve as the key's owner."""
        return self.decide(request_id, "approve", comment)[0]

    def reject(self, request_id: int, comment: str = "") -> ApprovalRequest:
        """Reject as the key's owner."""
        return self.decide(request_id, "reject", comment)[0]

    def reviewers(self) -> dict[str, list[str]]:
        """Registered reviewers and their roles."""
        result: dict[str, list[str]] = self._call("GET", "/reviewers")["reviewers"]
        return result

    def set_reviewer(self, name: str, roles: Sequence[str], **_: Any) -> None:
        """Register a reviewer (admin keys)."""
        self._call("PUT", f"/reviewers/{_q(name)}", json={"roles": list(roles)})


def _q(value: str, safe: str = "") -> str:
    from urllib.parse import quote

    return quote(str(value), safe=safe)


def _tags(tags: Mapping[str, str | None] | None) -> list[str] | None:
    if not tags:
        return None
    return [key if value is None else f"{key}={value}" for key, value in tags.items()]
