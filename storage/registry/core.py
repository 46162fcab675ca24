"""The model registry: models, versions, stages, aliases, lineage, comparison.

Every change runs in one write transaction together with its audit entry, so a
change and its record commit together or not at all. Artifacts are written to
the content-addressed store *before* the transaction: a crash in between leaves
at most an unreferenced blob, never a visible version without its files.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/mlops.db", f"{home}/artifacts", actor="ana")
    >>> _ = reg.create_model("fraud", description="card fraud classifier")
    >>> v1 = reg.create_version("fraud", framework="sklearn", metrics={"auc": 0.91},
    ...                         artifacts={"model.skops": b"..."})
    >>> (v1.number, v1.semver, v1.stage)
    (1, '0.1.0', 'development')
    >>> reg.set_alias("fraud", "champion", 1).to_version
    1
    >>> reg.get_version("fraud", "@champion").metrics
    {'auc': 0.91}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from blocks.settings import MlopsSettings, get_settings
from storage import schema as t
from storage.artifacts import ArtifactRef, ArtifactStore, validate_artifact_name
from storage.audit import append_entry
from storage.db import Database, Prepared, inserted_id
from storage.errors import AlreadyExistsError, NotFoundError, ValidationError
from storage.registry.compare import Comparison, Direction, compare_versions
from storage.registry.lifecycle import LifecycleMixin
from storage.registry.reads import MetricFilter, parse_metric_filter
from storage.registry.records import (
    FRAMEWORKS,
    Artifact,
    Model,
    ModelVersion,
)
from storage.registry.semver import BUMPS, Bump, SemVer
from storage.registry.version_files import VersionFilesMixin
from storage.registry.version_updates import VersionUpdatesMixin
from storage.validation import check_json, check_metrics, check_name, check_tags

VersionRef = int | str
ArtifactSource = bytes | str | Path | ArtifactRef

IDEMPOTENCY_TAG = "mlops.idempotency_key"
_KINDS = {
    ".onnx": "onnx",
    ".html": "report",
    ".md": "report",
    ".json": "model",
    ".ubj": "model",
    ".skops": "model",
    ".pt": "model",
    ".pkl": "model",
    ".bin": "model",
}

# The hot path of version creation runs these on the DB-API cursor (see storage.db.Prepared).
_MODEL_HEAD_LOCKED = Prepared(
    sa.select(t.models.c.id, t.models.c.last_number, t.models.c.latest_semver)
    .where(t.models.c.name == sa.bindparam("name"))
    .with_for_update()
)
_VERSION_COLUMNS = [
    "model_id", "number", "semver", "semver_major", "semver_minor", "semver_patch", "semver_pre",
    "stage", "framework", "description", "changelog", "hyperparameters", "signature", "extra",
    "dataset_id", "code_version", "flow_run_id", "parent_version_id", "created_by", "created_at",
    "stage_updated_at",
]  # fmt: skip
_INSERT_VERSION = Prepared(t.model_versions.insert().returning(t.model_versions.c.id), _VERSION_COLUMNS)
_INSERT_METRIC = Prepared(t.version_metrics.insert(), ["version_id", "key", "value", "exact"])
_INSERT_TAG = Prepared(t.version_tags.insert(), ["version_id", "key", "value"])
_TOUCH_MODEL = Prepared(
    t.models.update()
    .where(t.models.c.id == sa.bindparam("model_id"))
    .values(
        updated_at=sa.bindparam("now"),
        last_number=sa.bindparam("number"),
        latest_semver=sa.bindparam("semver"),
    )
)

__all__ = ["MetricFilter", "Registry", "parse_metric_filter"]


def _artifact_kind(name: str) -> str:
    return _KINDS.get(Path(name).suffix.lower(), "file")


class Registry(VersionUpdatesMixin, VersionFilesMixin, LifecycleMixin):
    """Models and their versions in one metadata database and artifact store.

    Args:
        db: The metadata database.
        artifacts: The artifact store for version files.
        actor: Name recorded on changes when a call does not name one.
    """

    def __init__(self, db: Database, artifacts: ArtifactStore, *, actor: str = "unknown") -> None:
        super().__init__(db)
        self.artifacts = artifacts
        self.actor = actor

    @classmethod
    def open(cls, database_url: str, artifact_root: str, *, actor: str = "unknown") -> Registry:
        """Open (and migrate if needed) the registry at these locations."""
        return cls(Database(database_url), ArtifactStore(artifact_root), actor=actor)

    @classmethod
    def from_settings(cls, settings: MlopsSettings | None = None) -> Registry:
        """Open the registry that ``MLOPS_*`` settings (or ``settings``) point at."""
        s = settings or get_settings()
        return cls.open(s.resolved_database_url(), s.resolved_artifact_root(), actor=s.resolved_user())

    # ----------------------------------------------------------------- models
    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        owner: str | None = None,
        tags: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Model:
        """Register a new model name; raises AlreadyExistsError when taken."""
        check_name("model", name)
        tag_values = check_tags(tags)
        who = actor or self.actor
        now = t.utcnow()
        with self.db.write() as conn:
            if conn.execute(sa.select(t.models.c.id).where(t.models.c.name == name)).first():
                raise AlreadyExistsError(f"model {name!r} already exists")
            model_id = inserted_id(
                conn,
                t.models.insert().values(
                    name=name,
                    description=description,
                    owner=owner,
                    created_by=who,
                    created_at=now,
                    updated_at=now,
                ),
            )
            if tag_values:
                conn.execute(
                    t.model_tags.insert(),
                    [{"model_id": model_id, "key": k, "value": v} for k, v in tag_values.items()],
                )
            append_entry(
                conn,
                actor=who,
                action="model.create",
                entity_type="model",
                entity_id=name,
                after={"description": description, "owner": owner, "tags": tag_values},
            )
        return self.get_model(name)

    def ensure_model(self, name: str, **details: Any) -> Model:
        """The model ``name``, created with ``details`` when it does not exist yet.

        Safe when several workers race to create the same model.
        """
        try:
            return self.get_model(name)
        except NotFoundError:
            pass
        try:
            return self.create_model(name, **details)
        except AlreadyExistsError:
            return self.get_model(name)

    def set_model_tag(self, name: str, key: str, value: str, *, actor: str | None = None) -> None:
        """Set one tag on a model."""
        tag = check_tags({key: value})
        with self.db.write() as conn:
            model_id = self._model_id(conn, name, lock=True)
            old = conn.execute(
                sa.select(t.model_tags.c.value).where(
                    t.model_tags.c.model_id == model_id, t.model_tags.c.key == key
                )
            ).scalar()
            conn.execute(
                t.model_tags.delete().where(t.model_tags.c.model_id == model_id, t.model_tags.c.key == key)
            )
            conn.execute(t.model_tags.insert().values(model_id=model_id, key=key, value=tag[key]))
            append_entry(
                conn,
                actor=actor or self.actor,
                action="model.tag",
                entity_type="model",
                entity_id=name,
                before={key: old},
                after={key: tag[key]},
            )

    # --------------------------------------------------------------- versions
    def create_version(
        self,
        model: str,
        *,
        framework: str,
        metrics: Mapping[str, Any] | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, ArtifactSource] | None = None,
        semver: str | None = None,
        bump: Bump = "minor",
        description: str = "",
        changelog: str = "",
        tags: Mapping[str, Any] | None = None,
        signature: Mapping[str, Any] | None = None,
        dataset_uri: str | None = None,
        dataset_hash: str | None = None,
        code_version: str | None = None,
        flow_run_id: str | None = None,
        parent_version: VersionRef | None = None,
        extra: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """Create the next version of ``model`` in the development stage.

        The number is the next integer; the semantic version is ``semver`` when
        given, otherwise the newest one bumped by ``bump`` (from 0.0.0 for the
        first version). Everything is validated before anything is written.
        A call repeated with the same ``idempotency_key`` (a retried task)
        returns the version the first call created instead of a new one.
        """
        if framework not in FRAMEWORKS:
            raise ValidationError(f"framework {framework!r} is not one of {', '.join(FRAMEWORKS)}")
        if bump not in BUMPS:
            raise ValidationError(f"bump {bump!r} is not one of {', '.join(BUMPS)}")
        explicit = SemVer.parse(semver) if semver is not None else None
        metric_values = check_metrics(metrics)
        tag_values = check_tags(tags)
        if idempotency_key is not None:
            tag_values[IDEMPOTENCY_TAG] = idempotency_key
        params = check_json("hyperparameters", dict(hyperparameters or {}))
        sig = check_json("signature", dict(signature)) if signature is not None else None
        extra_values = check_json("extra", dict(extra or {}))
        if (dataset_uri is None) != (dataset_hash is None):
            raise ValidationError("dataset_uri and dataset_hash must be given together")
        sources = {validate_artifact_name(name): src for name, src in (artifacts or {}).items()}
        if sources:  # nothing to leave behind otherwise: the transaction checks it all
            self._precheck(model, explicit, parent_version)
        refs = self._store_artifacts(sources)
        row = {
            "framework": framework,
            "description": description,
            "changelog": changelog,
            "hyperparameters": params,
            "signature": sig,
            "extra": extra_values,
            "code_version": code_version,
            "flow_run_id": flow_run_id,
        }
        return self._insert_version(
            model,
            row,
            explicit=explicit,
            bump=bump,
            metrics=metric_values,
            tags=tag_values,
            refs=refs,
            dataset=(dataset_uri, dataset_hash) if dataset_uri and dataset_hash else None,
            parent=parent_version,
            actor=actor or self.actor,
        )

    def _precheck(self, model: str, explicit: SemVer | None, parent: VersionRef | None) -> None:
        """Refuse what is already known to fail before any artifact is written."""
        with self.db.read() as conn:
            model_id = self._model_id(conn, model)
            if parent is not None:
                self._version_id(conn, model_id, model, parent)
            if explicit is not None:
                self._refuse_taken_semver(conn, model_id, model, explicit)

    def _refuse_taken_semver(self, conn: Connection, model_id: int, model: str, version: SemVer) -> None:
        mv = t.model_versions.c
        taken = conn.execute(
            sa.select(mv.number).where(mv.model_id == model_id, mv.semver == str(version))
        ).scalar()
        if taken is not None:
            raise AlreadyExistsError(
                f"model {model!r} already has semantic version {version} (version {taken})"
            )

    def _store_artifacts(self, sources: Mapping[str, ArtifactSource]) -> dict[str, ArtifactRef]:
        refs: dict[str, ArtifactRef] = {}
        for name, src in sources.items():
            if isinstance(src, ArtifactRef):  # uploaded earlier (the service's two-step registration)
                stored = self.artifacts.size_of(src.sha256)
                if stored != src.size:
                    raise ValidationError(
                        f"artifact {name!r}: {src.sha256[:12]} is stored with {stored} bytes, not {src.size}"
                    )
                refs[name] = src
            elif isinstance(src, bytes | bytearray):
                refs[name] = self.artifacts.put_bytes(bytes(src))
            else:
                refs[name] = self.artifacts.put_file(src)
        return refs

    def _insert_version(
        self,
        model: str,
        row: dict[str, Any],
        *,
        explicit: SemVer | None,
        bump: Bump,
        metrics: dict[str, float],
        tags: dict[str, str],
        refs: dict[str, ArtifactRef],
        dataset: tuple[str, str] | None,
        parent: VersionRef | None,
        actor: str,
    ) -> ModelVersion:
        now = t.utcnow()
        with self.db.write() as conn:
            head = _MODEL_HEAD_LOCKED.execute(conn, {"name": model}).fetchone()
            if head is None:
                raise NotFoundError(f"model {model!r} does not exist")
            model_id, number, latest = head[0], head[1] + 1, SemVer.parse(head[2])
            if IDEMPOTENCY_TAG in tags:
                done = self._version_with_tag(conn, model_id, IDEMPOTENCY_TAG, tags[IDEMPOTENCY_TAG])
                if done is not None:
                    return self._versions(conn, [done])[0]
            if explicit is not None:
                version = explicit
                self._refuse_taken_semver(conn, model_id, model, version)
            else:
                version = latest.bump(bump)
            parent_id = self._version_id(conn, model_id, model, parent) if parent is not None else None
            parent_number = self._number(conn, parent_id) if parent_id is not None else None
            dataset_id = self._dataset_id(conn, *dataset, now=now) if dataset else None
            values = {
                **row,
                "model_id": model_id,
                "number": number,
                "semver": str(version),
                "semver_major": version.major,
                "semver_minor": version.minor,
                "semver_patch": version.patch,
                "semver_pre": version.pre,
                "stage": "development",
                "dataset_id": dataset_id,
                "parent_version_id": parent_id,
                "created_by": actor,
                "created_at": now,
                "stage_updated_at": now,
            }
            version_id = int(_INSERT_VERSION.execute(conn, values).fetchone()[0])
            if metrics:
                rows = [
                    {"version_id": version_id, "key": k, "value": v, "exact": repr(v)}
                    for k, v in metrics.items()
                ]
                _INSERT_METRIC.execute_many(conn, rows)
            if tags:
                rows = [{"version_id": version_id, "key": k, "value": v} for k, v in tags.items()]
                _INSERT_TAG.execute_many(conn, rows)
            artifacts = [
                Artifact(name, _artifact_kind(name), ref.sha256, ref.size) for name, ref in refs.items()
            ]
            if artifacts:
                conn.execute(
                    t.version_artifacts.insert(),
                    [{"version_id": version_id, **a.to_dict()} for a in artifacts],
                )
            newest = max(latest, version, key=SemVer.sort_key)
            touch = {"model_id": model_id, "now": now, "number": number, "semver": str(newest)}
            _TOUCH_MODEL.execute(conn, touch)
            append_entry(
                conn,
                actor=actor,
                action="version.create",
                entity_type="model_version",
                entity_id=f"{model}/{number}",
                after={
                    "semver": str(version),
                    "framework": row["framework"],
                    "metrics": metrics,
                    "artifacts": {n: r.sha256 for n, r in refs.items()},
                    "dataset": list(dataset) if dataset else None,
                },
            )
        # Everything the new version holds is at hand: no need to read it back.
        return ModelVersion(
            id=version_id,
            model=model,
            number=number,
            semver=str(version),
            stage="development",
            framework=row["framework"],
            description=row["description"],
            changelog=row["changelog"],
            metrics=dict(metrics),
            hyperparameters=row["hyperparameters"],
            tags=dict(tags),
            signature=row["signature"],
            extra=row["extra"],
            dataset_uri=dataset[0] if dataset else None,
            dataset_hash=dataset[1] if dataset else None,
            code_version=row["code_version"],
            flow_run_id=row["flow_run_id"],
            parent_version=parent_number,
            created_by=actor,
            created_at=now,
            stage_updated_at=now,
            artifacts=tuple(sorted(artifacts, key=lambda a: a.name)),
        )

    def _version_with_tag(self, conn: Connection, model_id: int, key: str, value: str) -> int | None:
        vt, mv = t.version_tags.c, t.model_versions.c
        found = conn.execute(
            sa.select(mv.id)
            .join(t.version_tags, vt.version_id == mv.id)
            .where(mv.model_id == model_id, vt.key == key, vt.value == value)
        ).scalar()
        return None if found is None else int(found)

    def _dataset_id(self, conn: Connection, uri: str, content_hash: str, *, now: Any) -> int:
        d = t.datasets.c
        query = sa.select(d.id).where(d.uri == uri, d.content_hash == content_hash)
        found = conn.execute(query).scalar()
        if found is not None:
            return int(found)
        return inserted_id(
            conn, t.datasets.insert().values(uri=uri, content_hash=content_hash, created_at=now)
        )

    # ------------------------------------------------------------- comparison
    def compare(
        self,
        model: str,
        versions: Sequence[VersionRef],
        *,
        primary: str,
        metrics: Sequence[str] | None = None,
        direction: Direction = "max",
        min_improvement: float = 0.0,
        baseline: VersionRef | None = None,
    ) -> Comparison:
        """Compare versions side by side and pick a winner by ``primary``."""
        by_number = {mv.number: mv for mv in (self.get_version(model, v) for v in versions)}
        base = self.get_version(model, baseline).number if baseline is not None else None
        if base is not None and base not in by_number:
            by_number[base] = self.get_version(model, base)
        found = list(by_number.values())
        return compare_versions(
            found,
            primary=primary,
            metrics=metrics,
            direction=direction,
            min_improvement=min_improvement,
            baseline=base,
        )
