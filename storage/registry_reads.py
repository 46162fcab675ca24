"""Read side of the registry: lookups, version references, search, history, lineage.

A version reference (``VersionRef``) is one of: a number (``3`` or ``"3"``), a
semantic version (``"1.4.0"`` / ``"v1.4.0"``), an alias (``"@champion"`` or
``"champion"``), ``"latest"``, or a stage name (the newest version in it).
"""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.db import Database
from storage.errors import NotFoundError, ValidationError
from storage.records import STAGES, AliasMove, Artifact, Model, ModelVersion, Page, StageMove

VersionRef = int | str
_SEMVER_LIKE = re.compile(r"^v?\d+\.\d+\.\d+")
_VERSIONISH = re.compile(r"^v?\d+(\.\d*)+$")
_FILTER = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(>=|<=|==|!=|>|<|=)\s*(\S+)\s*$")
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class MetricFilter:
    """A metric threshold such as ``auc >= 0.9``."""

    key: str
    op: str
    value: float


def parse_metric_filter(text: str) -> MetricFilter:
    """Parse ``"auc>=0.9"`` into a :class:`MetricFilter`.

    Example:
        >>> parse_metric_filter("auc >= 0.9")
        MetricFilter(key='auc', op='>=', value=0.9)
    """
    match = _FILTER.match(text)
    if not match:
        raise ValidationError(f"metric filter {text!r} is malformed: expected e.g. 'auc>=0.9'")
    key, op, raw = match.groups()
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"metric filter {text!r}: {raw!r} is not a number") from None
    return MetricFilter(key, op, value)


def _token(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"page token {value!r} is not valid") from None


class RegistryReads:
    """Queries over the registry tables (no writes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------ resolution
    def _model_id(self, conn: Connection, name: str, *, lock: bool = False) -> int:
        query = sa.select(t.models.c.id).where(t.models.c.name == name)
        if lock:
            query = query.with_for_update()
        found = conn.execute(query).scalar()
        if found is None:
            raise NotFoundError(f"model {name!r} does not exist")
        return int(found)

    @staticmethod
    def _ref_label(ref: VersionRef) -> str:
        return str(ref)

    def _version_id(self, conn: Connection, model_id: int, model: str, ref: VersionRef) -> int:
        mv, a = t.model_versions.c, t.aliases.c
        text = str(ref).strip() if not isinstance(ref, int) else ""
        if isinstance(ref, bool):
            raise ValidationError(f"version {ref!r} is not a version number, semver or alias")
        if isinstance(ref, int) or text.isdigit():
            number = int(ref)
            query = sa.select(mv.id).where(mv.model_id == model_id, mv.number == number)
            missing = f"model {model!r} has no version {number}"
        elif text == "latest":
            query = sa.select(mv.id).where(mv.model_id == model_id).order_by(mv.number.desc()).limit(1)
            missing = f"model {model!r} has no versions"
        elif text in STAGES:
            query = (
                sa.select(mv.id)
                .where(mv.model_id == model_id, mv.stage == text)
                .order_by(mv.number.desc())
                .limit(1)
            )
            missing = f"model {model!r} has no version in {text}"
        elif _VERSIONISH.match(text) and not _SEMVER_LIKE.match(text):
            raise ValidationError(
                f"version {text!r} is malformed: use a number (3), a semantic version (1.4.0), "
                "an alias (@champion), 'latest' or a stage"
            )
        elif _SEMVER_LIKE.match(text):
            semver = text[1:] if text.startswith("v") else text
            query = sa.select(mv.id).where(mv.model_id == model_id, mv.semver == semver)
            missing = f"model {model!r} has no semantic version {semver}"
        else:
            alias = text.removeprefix("@")
            query = sa.select(a.version_id).where(a.model_id == model_id, a.alias == alias)
            missing = f"model {model!r} has no alias {alias!r}"
        found = conn.execute(query).scalar()
        if found is None:
            raise NotFoundError(missing)
        return int(found)

    def _number(self, conn: Connection, version_id: int) -> int:
        return int(
            conn.execute(
                sa.select(t.model_versions.c.number).where(t.model_versions.c.id == version_id)
            ).scalar_one()
        )

    # ---------------------------------------------------------------- models
    def get_model(self, name: str) -> Model:
        """A model with its tags, aliases and latest version number."""
        with self.db.read() as conn:
            model_id = self._model_id(conn, name)
            return self._models(conn, [model_id])[0]

    def _models(self, conn: Connection, ids: Sequence[int]) -> list[Model]:
        m, mv = t.models.c, t.model_versions.c
        rows = conn.execute(sa.select(t.models).where(m.id.in_(ids))).all()
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        for row in conn.execute(sa.select(t.model_tags).where(t.model_tags.c.model_id.in_(ids))):
            tags[row.model_id][row.key] = row.value
        aliases: dict[int, dict[str, int]] = defaultdict(dict)
        for row in conn.execute(
            sa.select(t.aliases.c.model_id, t.aliases.c.alias, mv.number)
            .join(t.model_versions, mv.id == t.aliases.c.version_id)
            .where(t.aliases.c.model_id.in_(ids))
        ):
            aliases[row.model_id][row.alias] = row.number
        latest = dict(
            conn.execute(
                sa.select(mv.model_id, sa.func.max(mv.number))
                .where(mv.model_id.in_(ids))
                .group_by(mv.model_id)
            ).all()
        )
        by_id = {
            r.id: Model(
                r.id,
                r.name,
                r.description,
                r.owner,
                dict(tags[r.id]),
                r.created_by,
                r.created_at,
                r.updated_at,
                dict(aliases[r.id]),
                latest.get(r.id),
            )
            for r in rows
        }
        return [by_id[i] for i in ids if i in by_id]

    def list_models(
        self,
        *,
        name_contains: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Model]:
        """Models ordered by name, filtered, one page at a time."""
        m = t.models.c
        query = sa.select(m.id, m.name).order_by(m.name).limit(self._page_size(page_size) + 1)
        if name_contains:
            query = query.where(m.name.contains(name_contains, autoescape=True))
        for key, value in (tags or {}).items():
            cond = [t.model_tags.c.model_id == m.id, t.model_tags.c.key == key]
            if value is not None:
                cond.append(t.model_tags.c.value == value)
            query = query.where(sa.exists().where(*cond))
        if page_token:
            query = query.where(m.name > page_token)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
            more = len(rows) > page_size
            rows = rows[:page_size]
            items = self._models(conn, [r.id for r in rows])
        return Page(items, rows[-1].name if more and rows else None)

    @staticmethod
    def _page_size(size: int) -> int:
        if not isinstance(size, int) or not 1 <= size <= 10_000:
            raise ValidationError(f"page size {size!r} must be between 1 and 10000")
        return size

    # -------------------------------------------------------------- versions
    def get_version(self, model: str, version: VersionRef) -> ModelVersion:
        """One version by number, semver, alias, ``latest`` or stage."""
        with self.db.read() as conn:
            model_id = self._model_id(conn, model)
            version_id = self._version_id(conn, model_id, model, version)
            return self._versions(conn, [version_id])[0]

    def _versions(self, conn: Connection, ids: Sequence[int]) -> list[ModelVersion]:
        if not ids:
            return []
        mv = t.model_versions.c
        parent = t.model_versions.alias("parent")
        rows = conn.execute(
            sa.select(
                t.model_versions,
                t.models.c.name.label("model_name"),
                t.datasets.c.uri.label("dataset_uri"),
                t.datasets.c.content_hash.label("dataset_hash"),
                parent.c.number.label("parent_number"),
            )
            .join(t.models, t.models.c.id == mv.model_id)
            .outerjoin(t.datasets, t.datasets.c.id == mv.dataset_id)
            .outerjoin(parent, parent.c.id == mv.parent_version_id)
            .where(mv.id.in_(ids))
        ).all()
        metrics: dict[int, dict[str, float]] = defaultdict(dict)
        for r in conn.execute(sa.select(t.version_metrics).where(t.version_metrics.c.version_id.in_(ids))):
            metrics[r.version_id][r.key] = r.value
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        for r in conn.execute(sa.select(t.version_tags).where(t.version_tags.c.version_id.in_(ids))):
            tags[r.version_id][r.key] = r.value
        arts: dict[int, list[Artifact]] = defaultdict(list)
        for r in conn.execute(
            sa.select(t.version_artifacts)
            .where(t.version_artifacts.c.version_id.in_(ids))
            .order_by(t.version_artifacts.c.name)
        ):
            arts[r.version_id].append(Artifact(r.name, r.kind, r.sha256, r.size))
        aliases: dict[int, list[str]] = defaultdict(list)
        for r in conn.execute(
            sa.select(t.aliases.c.version_id, t.aliases.c.alias)
            .where(t.aliases.c.version_id.in_(ids))
            .order_by(t.aliases.c.alias)
        ):
            aliases[r.version_id].append(r.alias)
        by_id = {
            r.id: ModelVersion(
                id=r.id,
                model=r.model_name,
                number=r.number,
                semver=r.semver,
                stage=r.stage,
                framework=r.framework,
                description=r.description,
                changelog=r.changelog,
                metrics=dict(metrics[r.id]),
                hyperparameters=r.hyperparameters,
                tags=dict(tags[r.id]),
                signature=r.signature,
                extra=r.extra,
                dataset_uri=r.dataset_uri,
                dataset_hash=r.dataset_hash,
                code_version=r.code_version,
                flow_run_id=r.flow_run_id,
                parent_version=r.parent_number,
                created_by=r.created_by,
                created_at=r.created_at,
                stage_updated_at=r.stage_updated_at,
                artifacts=tuple(arts[r.id]),
                aliases=tuple(aliases[r.id]),
            )
            for r in rows
        }
        return [by_id[i] for i in ids if i in by_id]

    def search_versions(
        self,
        *,
        model: str | None = None,
        stage: str | None = None,
        alias: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        metrics: Sequence[MetricFilter | str] = (),
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        """Versions matching every filter, newest first, one page at a time."""
        mv = t.model_versions.c
        query = sa.select(mv.id).order_by(mv.id.desc()).limit(self._page_size(page_size) + 1)
        if model is not None:
            query = query.join(t.models, t.models.c.id == mv.model_id).where(t.models.c.name == model)
        if stage is not None:
            if stage not in STAGES:
                raise ValidationError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
            query = query.where(mv.stage == stage)
        if alias is not None:
            query = query.where(
                sa.exists().where(t.aliases.c.version_id == mv.id, t.aliases.c.alias == alias)
            )
        for key, value in (tags or {}).items():
            cond = [t.version_tags.c.version_id == mv.id, t.version_tags.c.key == key]
            if value is not None:
                cond.append(t.version_tags.c.value == str(value))
            query = query.where(sa.exists().where(*cond))
        for item in metrics:
            f = parse_metric_filter(item) if isinstance(item, str) else item
            vm = t.version_metrics.c
            query = query.where(
                sa.exists().where(vm.version_id == mv.id, vm.key == f.key, _OPS[f.op](vm.value, f.value))
            )
        after = _token(page_token)
        if after is not None:
            query = query.where(mv.id < after)
        with self.db.read() as conn:
            if model is not None:
                self._model_id(conn, model)
            ids = list(conn.execute(query).scalars())
            more = len(ids) > page_size
            ids = ids[:page_size]
            items = self._versions(conn, ids)
        return Page(items, str(ids[-1]) if more else None)

    def list_versions(
        self, model: str, *, stage: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[ModelVersion]:
        """A model's versions, newest first, one page at a time."""
        return self.search_versions(model=model, stage=stage, page_size=page_size, page_token=page_token)

    def all_versions(self, model: str, *, stage: str | None = None) -> list[ModelVersion]:
        """Every version of a model (or those in ``stage``), newest first, fetched page by page."""
        versions: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self.list_versions(model, stage=stage, page_size=1000, page_token=token)
            versions.extend(page.items)
            if (token := page.next_token) is None:
                return versions

    def _artifact(self, model: str, version: VersionRef, name: str) -> Artifact:
        mv = self.get_version(model, version)
        for art in mv.artifacts:
            if art.name == name:
                return art
        names = ", ".join(a.name for a in mv.artifacts) or "none"
        raise NotFoundError(f"{model} version {mv.number} has no artifact {name!r} (it has: {names})")

    # --------------------------------------------------------------- history
    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or of one alias), oldest first."""
        h = t.alias_history.c
        src, dst = t.model_versions.alias("src"), t.model_versions.alias("dst")
        with self.db.read() as conn:
            model_id = self._model_id(conn, model)
            query = (
                sa.select(
                    h.alias, src.c.number.label("src"), dst.c.number.label("dst"), h.actor, h.reason, h.at
                )
                .outerjoin(src, src.c.id == h.from_version_id)
                .outerjoin(dst, dst.c.id == h.to_version_id)
                .where(h.model_id == model_id)
                .order_by(h.id)
            )
            if alias is not None:
                query = query.where(h.alias == alias)
            return [
                AliasMove(model, r.alias, r.src, r.dst, r.actor, r.reason, r.at) for r in conn.execute(query)
            ]

    def stage_history(self, model: str, version: VersionRef | None = None) -> list[StageMove]:
        """Every stage move of a model's versions (or of one version), oldest first."""
        s, mv = t.stage_history.c, t.model_versions.c
        with self.db.read() as conn:
            model_id = self._model_id(conn, model)
            query = (
                sa.select(mv.number, s.from_stage, s.to_stage, s.actor, s.reason, s.at)
                .join(t.model_versions, mv.id == s.version_id)
                .where(mv.model_id == model_id)
                .order_by(s.id)
            )
            if version is not None:
                query = query.where(s.version_id == self._version_id(conn, model_id, model, version))
            return [
                StageMove(model, r.number, r.from_stage, r.to_stage, r.actor, r.reason, r.at)
                for r in conn.execute(query)
            ]

    def lineage(self, model: str, version: VersionRef | None = None) -> dict[str, Any]:
        """Dataset → training run → version (→ parent) for each version of a model."""
        if version is not None:
            versions = [self.get_version(model, version)]
        else:
            versions = self.all_versions(model)
        chains: list[dict[str, Any]] = [
            {
                "dataset": {"uri": v.dataset_uri, "hash": v.dataset_hash} if v.dataset_uri else None,
                "run": {"flow_run_id": v.flow_run_id, "code_version": v.code_version},
                "version": {
                    "number": v.number,
                    "semver": v.semver,
                    "stage": v.stage,
                    "aliases": list(v.aliases),
                },
                "parent_version": v.parent_version,
                "deployments": [],
            }
            for v in sorted(versions, key=lambda v: v.number)
        ]
        return {"model": model, "versions": chains}
