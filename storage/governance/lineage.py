"""Data lineage: registered datasets and who used them, and each model version's lineage.

A *data asset* is a dataset the platform knows by name: where it lives
(``uri``), where it came from (``source``), who owns it, whether it holds
personal data and how long it may be kept, and the transformations that
produced it. Usage records say which feature groups, model versions and
downstream datasets used it. A model version is also linked to every asset
whose ``uri`` equals the version's training ``dataset_uri`` in the registry.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from storage.governance.lineage import LineageStore
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/mlops.db", f"{home}/artifacts", actor="ana")
    >>> lineage = LineageStore(reg)
    >>> asset = lineage.register_dataset("transactions", uri="s3://raw/tx.parquet", source="core-banking",
    ...                                  owner="data-eng", contains_pii=True, retention_days=365)
    >>> _ = reg.create_model("fraud")
    >>> _ = reg.create_version("fraud", framework="sklearn")
    >>> lineage.record_usage("transactions", user_kind="model_version", user_name="fraud/1")
    >>> [d.name for d in lineage.datasets_for_version("fraud", 1)]
    ['transactions']
    >>> lineage.dataset_lineage("transactions")["model_versions"]
    [{'name': 'fraud/1', 'relation': 'trained_on'}]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.audit import append_entry
from storage.errors import AlreadyExistsError, NotFoundError, ValidationError
from storage.registry.approvals import ApprovalRequest, ApprovalStore
from storage.registry.core import Registry, VersionRef
from storage.registry.records import ModelVersion, Record
from storage.validation import check_name

UserKind = Literal["feature_group", "model_version", "dataset"]
USER_KINDS: tuple[str, ...] = get_args(UserKind)
_MODEL_VERSION = re.compile(r"^(?P<model>.+)/(?P<number>[1-9]\d*)$")
_RELATION = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")

__all__ = ["USER_KINDS", "DataAsset", "LineageStore", "UserKind"]


@dataclass(frozen=True)
class DataAsset(Record):
    """A registered dataset: location, source, owner, PII flag, retention, transformations."""

    id: int
    name: str
    uri: str
    source: str
    owner: str
    contains_pii: bool
    retention_days: int | None
    transformations: tuple[str, ...]
    description: str
    created_by: str
    created_at: datetime


def _asset(row: Any) -> DataAsset:
    return DataAsset(
        id=int(row.id),
        name=row.name,
        uri=row.uri,
        source=row.source,
        owner=row.owner,
        contains_pii=bool(row.contains_pii),
        retention_days=row.retention_days,
        transformations=tuple(row.transformations or ()),
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _text(field: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise ValidationError(f"{field} {value!r} must be a non-empty string of at most {max_len} characters")
    return value


def _check_transformations(value: Sequence[str]) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(f"transformations {value!r} must be a list of strings, not one string")
    return [_text("transformation", step, 1024) for step in value]


def _check_retention(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"retention_days {value!r} must be a positive whole number of days or None")
    return value


class LineageStore:
    """Data assets and their usage, in the registry's metadata database.

    Args:
        registry: The registry whose database holds the assets; its ``actor``
            is recorded on changes when a call names none.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.db = registry.db

    # ----------------------------------------------------------------- assets
    def register_dataset(
        self,
        name: str,
        *,
        uri: str,
        source: str,
        owner: str,
        contains_pii: bool,
        retention_days: int | None,
        transformations: Sequence[str] = (),
        description: str = "",
        actor: str | None = None,
    ) -> DataAsset:
        """Register a dataset by name; raises AlreadyExistsError when the name is taken."""
        check_name("dataset", name)
        if not isinstance(contains_pii, bool):
            raise ValidationError(f"contains_pii {contains_pii!r} must be True or False")
        values = {
            "name": name,
            "uri": _text("uri", uri, 2048),
            "source": _text("source", source, 1024),
            "owner": _text("owner", owner, 255),
            "contains_pii": contains_pii,
            "retention_days": _check_retention(retention_days),
            "transformations": _check_transformations(transformations),
            "description": description if isinstance(description, str) else str(description),
        }
        who = actor or self.registry.actor
        now = t.utcnow()
        a = t.data_assets.c
        try:
            with self.db.write() as conn:
                if conn.execute(sa.select(a.id).where(a.name == name)).first():
                    raise AlreadyExistsError(f"dataset {name!r} already exists")
                conn.execute(t.data_assets.insert().values(**values, created_by=who, created_at=now))
                append_entry(
                    conn,
                    actor=who,
                    action="dataset.register",
                    entity_type="dataset",
                    entity_id=name,
                    after={k: v for k, v in values.items() if k != "name"},
                )
        except sa.exc.IntegrityError:  # a concurrent writer took the name first
            raise AlreadyExistsError(f"dataset {name!r} already exists") from None
        return self.get_dataset(name)

    def get_dataset(self, name: str) -> DataAsset:
        """The dataset ``name``; raises NotFoundError when it is not registered."""
        with self.db.read() as conn:
            return self._get(conn, name)

    def _get(self, conn: Connection, name: str) -> DataAsset:
        row = conn.execute(sa.select(t.data_assets).where(t.data_assets.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"dataset {name!r} is not registered")
        return _asset(row)

    def list_datasets(self) -> list[DataAsset]:
        """Every registered dataset, by name."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.data_assets).order_by(t.data_assets.c.name))
            return [_asset(r) for r in rows]

    # ------------------------------------------------------------------ usage
    def record_usage(
        self,
        dataset: str,
        *,
        user_kind: UserKind,
        user_name: str,
        relation: str = "trained_on",
    ) -> None:
        """Record that a feature group, model version (``"model/number"``) or dataset used ``dataset``.

        The user must exist (NotFoundError otherwise): lineage records what the
        platform knows, not free text. Idempotent: recording the same usage
        twice stores (and audits) it once.
        """
        if user_kind not in USER_KINDS:
            raise ValidationError(f"user_kind {user_kind!r} is not one of {', '.join(USER_KINDS)}")
        _text("user_name", user_name, 512)
        if user_kind == "model_version" and not _MODEL_VERSION.match(user_name):
            raise ValidationError(f"model version {user_name!r} must be named 'model/number', e.g. 'fraud/3'")
        if not isinstance(relation, str) or not _RELATION.match(relation):
            raise ValidationError(
                f"relation {relation!r} must be a short lower-case word such as 'trained_on'"
            )
        u = t.data_asset_usage.c
        try:
            with self.db.write() as conn:
                asset_id = self._get(conn, dataset).id
                self._check_user(conn, user_kind, user_name)
                key = (u.asset_id == asset_id, u.user_kind == user_kind, u.user_name == user_name)
                if conn.execute(sa.select(u.id).where(*key, u.relation == relation)).first():
                    return
                conn.execute(
                    t.data_asset_usage.insert().values(
                        asset_id=asset_id,
                        user_kind=user_kind,
                        user_name=user_name,
                        relation=relation,
                        created_at=t.utcnow(),
                    )
                )
                append_entry(
                    conn,
                    actor=self.registry.actor,
                    action="dataset.usage",
                    entity_type="dataset",
                    entity_id=dataset,
                    after={"user_kind": user_kind, "user_name": user_name, "relation": relation},
                )
        except sa.exc.IntegrityError:  # a concurrent writer recorded the same usage
            return

    def _check_user(self, conn: Connection, kind: str, name: str) -> None:
        """Refuse usage by a model version, feature group or dataset that does not exist."""
        if kind == "model_version":
            match = _MODEL_VERSION.match(name)
            assert match is not None  # checked by the caller
            model_id = self.registry._model_id(conn, match["model"])
            self.registry._version_id(conn, model_id, match["model"], int(match["number"]))
        elif kind == "feature_group":
            g = t.feature_groups.c
            if conn.execute(sa.select(g.id).where(g.name == name)).first() is None:
                raise NotFoundError(f"feature group {name!r} does not exist")
        else:
            self._get(conn, name)

    def _users(self, conn: Connection, asset_id: int, kind: str) -> list[dict[str, str]]:
        u = t.data_asset_usage.c
        rows = conn.execute(
            sa.select(u.user_name, u.relation)
            .where(u.asset_id == asset_id, u.user_kind == kind)
            .order_by(u.user_name, u.relation)
        )
        return [{"name": r.user_name, "relation": r.relation} for r in rows]

    # ---------------------------------------------------------------- queries
    def datasets_for_version(self, model: str, version: VersionRef) -> list[DataAsset]:
        """The assets a version used: recorded usage plus those at its training ``dataset_uri``."""
        mv = self.registry.get_version(model, version)
        with self.db.read() as conn:
            return self._datasets_for(conn, f"{model}/{mv.number}", mv.dataset_uri)

    def _datasets_for(self, conn: Connection, user_name: str, dataset_uri: str | None) -> list[DataAsset]:
        a, u = t.data_assets.c, t.data_asset_usage.c
        used = sa.select(u.asset_id).where(u.user_kind == "model_version", u.user_name == user_name)
        condition: sa.ColumnElement[bool] = a.id.in_(used)
        if dataset_uri:
            condition = sa.or_(condition, a.uri == dataset_uri)
        rows = conn.execute(sa.select(t.data_assets).where(condition).order_by(a.name))
        return [_asset(r) for r in rows]

    def dataset_lineage(self, name: str) -> dict[str, Any]:
        """A dataset, the feature groups and model versions that used it, and the datasets around it.

        ``model_versions`` holds recorded usage and every version whose training
        ``dataset_uri`` is the asset's ``uri`` (relation ``"dataset_uri"``);
        ``downstream`` the datasets derived from it, ``upstream`` those it was derived from.
        """
        a, u = t.data_assets.c, t.data_asset_usage.c
        mv, d, m = t.model_versions.c, t.datasets.c, t.models.c
        with self.db.read() as conn:
            asset = self._get(conn, name)
            versions = self._users(conn, asset.id, "model_version")
            seen = {v["name"] for v in versions}
            by_uri = conn.execute(
                sa.select(m.name, mv.number)
                .join(t.model_versions, mv.model_id == m.id)
                .join(t.datasets, d.id == mv.dataset_id)
                .where(d.uri == asset.uri)
                .order_by(m.name, mv.number)
            )
            for r in by_uri:
                if f"{r.name}/{r.number}" not in seen:
                    versions.append({"name": f"{r.name}/{r.number}", "relation": "dataset_uri"})
            upstream = conn.execute(
                sa.select(a.name, u.relation)
                .join(t.data_asset_usage, u.asset_id == a.id)
                .where(u.user_kind == "dataset", u.user_name == name)
                .order_by(a.name)
            )
            return {
                "dataset": asset.to_dict(),
                "feature_groups": self._users(conn, asset.id, "feature_group"),
                "model_versions": versions,
                "downstream": self._users(conn, asset.id, "dataset"),
                "upstream": [{"name": r.name, "relation": r.relation} for r in upstream],
            }

    def _feature_groups(self, conn: Connection, model: str, labels: Sequence[str]) -> list[dict[str, Any]]:
        """The feature store's usage records of one version (by number or semver label)."""
        f, g, fu = t.features.c, t.feature_groups.c, t.feature_usage.c
        rows = conn.execute(
            sa.select(g.name.label("group"), f.name, f.version)
            .join(t.features, f.id == fu.feature_id)
            .join(t.feature_groups, g.id == f.group_id)
            .where(fu.model_name == model, fu.model_version.in_(list(labels)))
            .order_by(g.name, f.name, f.version)
        )
        groups: dict[str, list[str]] = {}
        for r in rows:
            ref = f"{r.group}:{r.name}@{r.version}"
            if ref not in groups.setdefault(r.group, []):
                groups[r.group].append(ref)
        return [{"group": name, "features": refs} for name, refs in groups.items()]

    def model_lineage(self, model: str) -> dict[str, Any]:
        """Per version: datasets (PII flag, retention, source), feature groups, run, approvals, stage."""
        self.registry.get_model(model)  # NotFoundError names the model
        versions = sorted(self.registry.all_versions(model), key=lambda v: v.number)
        requests = ApprovalStore(self.registry).list(model=model, limit=100_000)
        with self.db.read() as conn:
            chains = [self._chain(conn, model, v, requests) for v in versions]
        return {"model": model, "versions": chains}

    def version_lineage(self, model: str, version: VersionRef) -> dict[str, Any]:
        """One version's chain, as in :meth:`model_lineage` (reads only that version's rows)."""
        v = self.registry.get_version(model, version)
        requests = [
            r for r in ApprovalStore(self.registry).list(model=model, limit=100_000) if r.version == v.number
        ]
        with self.db.read() as conn:
            return self._chain(conn, model, v, requests)

    def _chain(self, conn: Connection, model: str, v: ModelVersion, requests: list[ApprovalRequest]) -> dict:
        assets = self._datasets_for(conn, f"{model}/{v.number}", v.dataset_uri)
        return {
            "number": v.number,
            "semver": v.semver,
            "stage": v.stage,
            "aliases": list(v.aliases),
            "training_dataset": ({"uri": v.dataset_uri, "hash": v.dataset_hash} if v.dataset_uri else None),
            "datasets": [
                {
                    "name": x.name,
                    "uri": x.uri,
                    "source": x.source,
                    "owner": x.owner,
                    "contains_pii": x.contains_pii,
                    "retention_days": x.retention_days,
                    "transformations": list(x.transformations),
                }
                for x in assets
            ],
            "feature_groups": self._feature_groups(conn, model, [str(v.number), v.semver]),
            "run": {"flow_run_id": v.flow_run_id, "code_version": v.code_version},
            "approvals": [
                {
                    "id": r.id,
                    "target_stage": r.target_stage,
                    "status": r.status,
                    "requested_by": r.requested_by,
                    "approved_by": [d.reviewer for d in r.decisions if d.decision == "approve"],
                    "required_approvals": r.required_approvals,
                    "decided_at": r.decided_at.isoformat() if r.decided_at else None,
                }
                for r in reversed(requests)
                if r.version == v.number
            ],
        }
