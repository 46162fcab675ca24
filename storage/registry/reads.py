"""Read side of the registry: lookups, version references, search, history, lineage.

A version reference (``VersionRef``) is one of: a number (``3`` or ``"3"``), a
semantic version (``"1.4.0"`` / ``"v1.4.0"``), an alias (``"@champion"`` or
``"champion"``), ``"latest"``, or a stage name (the newest version in it).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.db import Database, Prepared
from storage.errors import NotFoundError, ValidationError
from storage.registry.records import STAGES, AliasMove, Artifact, Model, ModelVersion, Page, StageMove
from storage.registry.version_query import VersionQueries, to_version

VersionRef = int | str
_SEMVER_LIKE = re.compile(r"^v?\d+\.\d+\.\d+", re.ASCII)
_VERSIONISH = re.compile(r"^v?\d+(\.\d*)+$", re.ASCII)
#: The largest version number a database column holds (a signed 64-bit integer).
MAX_VERSION_NUMBER = 2**63 - 1


def version_number(ref: object) -> int | None:
    """The version number ``ref`` names, or None when it is not a number.

    Only ASCII digits count (``'¹'.isdigit()`` is true, yet ``int('¹')`` fails);
    a number no version can have is a :class:`ValidationError`, not a crash.

    >>> version_number(" 3 "), version_number("¹"), version_number("@champion")
    (3, None, None)
    >>> version_number("9" * 30)
    Traceback (most recent call last):
    ...
    storage.errors.ValidationError: version number 999999999999999999999999999999 is out of range
    """
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        number = ref
    else:
        text = str(ref).strip()
        if not (text.isascii() and text.isdigit()):
            return None
        if len(text) > 30:
            raise ValidationError(f"version number {text[:30]}... ({len(text)} digits) is out of range")
        number = int(text)
    if not 0 <= number <= MAX_VERSION_NUMBER:
        shown = str(number) if abs(number) < 10**30 else f"of {number.bit_length()} bits"
        raise ValidationError(f"version number {shown} is out of range")
    return number


_FILTER = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(>=|<=|==|!=|>|<|=)\s*(\S+)\s*$")


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


_QUERIES: dict[str, VersionQueries] = {}
_MODEL_ID = sa.select(t.models.c.id).where(t.models.c.name == sa.bindparam("name"))
_MODEL_ID_LOCKED = _MODEL_ID.with_for_update()


def queries_for(dialect: str) -> VersionQueries:
    """The prebuilt version statements of one dialect (built once per process)."""
    if dialect not in _QUERIES:
        _QUERIES[dialect] = VersionQueries(dialect)
    return _QUERIES[dialect]


_PREPARED: dict[int, Prepared] = {}


def _prepared(statement: sa.Select[Any]) -> Prepared:
    """The cursor-level form of one of the (long-lived, cached) version statements."""
    found = _PREPARED.get(id(statement))
    if found is None:
        found = _PREPARED[id(statement)] = Prepared(statement)
    return found


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
        self.queries = queries_for(db.dialect)

    # ------------------------------------------------------------ resolution
    def _model_id(self, conn: Connection, name: str, *, lock: bool = False) -> int:
        found = conn.execute(_MODEL_ID_LOCKED if lock else _MODEL_ID, {"name": name}).scalar()
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
        number = version_number(ref)
        if number is not None:
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
        statement, params = self._lookup(model, version)
        with self.db.read() as conn:
            row = _prepared(statement).execute(conn, params).fetchone()
            if row is None:  # say precisely what is missing (raises)
                model_id = self._model_id(conn, model)
                return self._versions(conn, [self._version_id(conn, model_id, model, version)])[0]
        return to_version(row)

    def _lookup(self, model: str, ref: VersionRef) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The one statement that reads ``ref`` of ``model``, and its parameters."""
        q = self.queries
        if isinstance(ref, bool):
            raise ValidationError(f"version {ref!r} is not a version number, semver or alias")
        number = version_number(ref)
        if number is not None:
            return q.by_number, {"model": model, "number": number}
        text = str(ref).strip()
        if text == "latest":
            return q.latest, {"model": model}
        if text in STAGES:
            return q.latest_in_stage, {"model": model, "stage": text}
        if _VERSIONISH.match(text) and not _SEMVER_LIKE.match(text):
            raise ValidationError(
                f"version {text!r} is malformed: use a number (3), a semantic version (1.4.0), "
                "an alias (@champion), 'latest' or a stage"
            )
        if _SEMVER_LIKE.match(text):
            return q.by_semver, {"model": model, "semver": text.removeprefix("v")}
        return q.by_alias, {"model": model, "alias": text.removeprefix("@")}

    def _versions(self, conn: Connection, ids: Sequence[int]) -> list[ModelVersion]:
        """Whole versions by id, in the order of ``ids``."""
        if not ids:
            return []
        by_id = {row[0]: to_version(row) for row in conn.execute(self.queries.by_ids, {"ids": list(ids)})}
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
        if stage is not None and stage not in STAGES:
            raise ValidationError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
        filters = [parse_metric_filter(f) if isinstance(f, str) else f for f in metrics]
        tag_items = list((tags or {}).items())
        after = _token(page_token)
        statement = self.queries.page(
            model=model is not None,
            stage=stage is not None,
            alias=alias is not None,
            tags=[value is not None for _, value in tag_items],
            metric_ops=[f.op for f in filters],
            after=after is not None,
        )
        params: dict[str, Any] = {"limit": self._page_size(page_size) + 1}
        optional = {"model": model, "stage": stage, "alias": alias, "after": after}
        params.update({k: v for k, v in optional.items() if v is not None})
        for n, (key, value) in enumerate(tag_items):
            params[f"tk{n}"] = key
            if value is not None:
                params[f"tv{n}"] = str(value)
        for n, f in enumerate(filters):
            params[f"mk{n}"], params[f"mv{n}"] = f.key, f.value
        with self.db.read() as conn:
            rows = _prepared(statement).execute(conn, params).fetchall()
            if model is not None and not rows:
                self._model_id(conn, model)  # an unknown model is an error, not an empty page
        more = len(rows) > page_size
        items = [to_version(row) for row in rows[:page_size]]
        return Page(items, str(items[-1].id) if more else None)

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

    def artifact(self, model: str, version: VersionRef, name: str) -> Artifact:
        """One file of a version by name (NotFoundError lists the files it has)."""
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
