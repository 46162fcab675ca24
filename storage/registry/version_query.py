"""One-statement reads of model versions, built once per database dialect.

A version's metrics, tags, aliases and artifacts come back as JSON aggregates
in the same row as the version (``json_group_object`` on SQLite,
``json_object_agg`` on PostgreSQL), so a lookup or a page is one statement.
Statements are built once and reused with bound parameters; search
statements are cached by the shape of their filters.

Example:
    >>> from storage.registry.version_query import VersionQueries
    >>> queries = VersionQueries("sqlite")
    >>> "json_group_object" in str(queries.by_number)
    True
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.registry.records import Artifact, ModelVersion

mv, m = t.model_versions, t.models
vm, vt, va, al = t.version_metrics, t.version_tags, t.version_artifacts, t.aliases
_PARENT = mv.alias("parent")
_new = object.__new__
_TEXT = sa.String()

OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
}


def _document(dialect: str) -> Any:
    """One JSON document per version: metrics, tags, aliases, artifacts and the JSON columns.

    Keys: ``m`` metrics, ``t`` tags, ``a`` aliases, ``r`` artifacts (name, kind,
    sha256, size), ``h`` hyperparameters, ``s`` signature, ``x`` extra. One
    document decodes faster than seven.
    """
    if dialect == "postgresql":
        obj, arr, row, doc = (
            sa.func.json_object_agg,
            sa.func.json_agg,
            sa.func.json_build_array,
            sa.func.json_build_object,
        )
        # float8 renders shortest-exact in PostgreSQL; the stored repr() is parsed as a number.
        value: Any = sa.cast(vm.c.exact, sa.JSON)

        def nested(expr: Any) -> Any:
            return expr

    else:
        obj, arr, row, doc = (
            sa.func.json_group_object,
            sa.func.json_group_array,
            sa.func.json_array,
            sa.func.json_object,
        )
        # SQLite's JSON prints a REAL with 15 digits; the stored repr() keeps all 17.
        value = sa.func.json(vm.c.exact)

        def nested(expr: Any) -> Any:
            return sa.func.json(expr)

    metrics = sa.select(obj(vm.c.key, value)).where(vm.c.version_id == mv.c.id)
    tags = sa.select(obj(vt.c.key, vt.c.value)).where(vt.c.version_id == mv.c.id)
    aliases = sa.select(arr(al.c.alias)).where(al.c.version_id == mv.c.id)
    artifacts = sa.select(arr(row(va.c.name, va.c.kind, va.c.sha256, va.c.size))).where(
        va.c.version_id == mv.c.id
    )
    parts: list[Any] = [q.correlate(mv).scalar_subquery() for q in (metrics, tags, aliases, artifacts)]
    parts += [mv.c.hyperparameters, mv.c.signature, mv.c.extra]
    args: list[Any] = []
    for key, part in zip("mtarhsx", parts, strict=True):
        args += [key, nested(part)]
    return doc(*args)


def _json(value: Any) -> Any:
    """Decode a JSON column read as text (SQLite) or already decoded (PostgreSQL)."""
    if value.__class__ is not str:
        return value
    if value == "{}":
        return {}
    if value == "[]":
        return []
    return None if value == "null" else json.loads(value)


def _timestamp(value: Any) -> datetime:
    """A UTC timestamp read as text (SQLite) or as a datetime (PostgreSQL)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class VersionQueries:
    """Prebuilt statements that read whole versions for one dialect."""

    def __init__(self, dialect: str) -> None:
        parent_number = (
            sa.select(_PARENT.c.number).where(_PARENT.c.id == mv.c.parent_version_id).correlate(mv)
        ).scalar_subquery()
        self.columns = (
            mv.c.id,
            mv.c.number,
            mv.c.semver,
            mv.c.stage,
            mv.c.framework,
            mv.c.description,
            mv.c.changelog,
            mv.c.code_version,
            mv.c.flow_run_id,
            mv.c.created_by,
            sa.type_coerce(mv.c.created_at, _TEXT),
            sa.type_coerce(mv.c.stage_updated_at, _TEXT),
            m.c.name,
            t.datasets.c.uri,
            t.datasets.c.content_hash,
            parent_number,
            sa.type_coerce(_document(dialect), _TEXT),
        )
        self.source = mv.join(m, m.c.id == mv.c.model_id).outerjoin(
            t.datasets, t.datasets.c.id == mv.c.dataset_id
        )
        base = sa.select(*self.columns).select_from(self.source)
        in_model = m.c.name == sa.bindparam("model")
        self.by_number = base.where(in_model, mv.c.number == sa.bindparam("number"))
        self.by_semver = base.where(in_model, mv.c.semver == sa.bindparam("semver"))
        self.by_alias = (
            sa.select(*self.columns)
            .select_from(self.source.join(al, sa.and_(al.c.version_id == mv.c.id, al.c.model_id == m.c.id)))
            .where(in_model, al.c.alias == sa.bindparam("alias"))
        )
        self.latest = base.where(in_model).order_by(mv.c.number.desc()).limit(1)
        self.latest_in_stage = (
            base.where(in_model, mv.c.stage == sa.bindparam("stage")).order_by(mv.c.number.desc()).limit(1)
        )
        self.by_ids = base.where(mv.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(mv.c.id.desc())
        self._pages: dict[tuple[Any, ...], sa.Select[Any]] = {}

    def page(
        self,
        *,
        model: bool,
        stage: bool,
        alias: bool,
        tags: Sequence[bool],
        metric_ops: Sequence[str],
        after: bool,
    ) -> sa.Select[Any]:
        """The search statement for one shape of filters (cached).

        Parameters bound at execution: ``model``, ``stage``, ``alias``,
        ``tk{n}``/``tv{n}`` per tag (``tv`` only when ``tags[n]`` is True),
        ``mk{n}``/``mv{n}`` per metric filter, ``after`` and ``limit``.
        """
        key = (model, stage, alias, tuple(tags), tuple(metric_ops), after)
        found = self._pages.get(key)
        if found is not None:
            return found
        ids = sa.select(mv.c.id)
        if model:
            model_id = sa.select(m.c.id).where(m.c.name == sa.bindparam("model")).scalar_subquery()
            ids = ids.where(mv.c.model_id == model_id)
        if stage:
            ids = ids.where(mv.c.stage == sa.bindparam("stage"))
        if alias:
            ids = ids.where(
                mv.c.id.in_(sa.select(al.c.version_id).where(al.c.alias == sa.bindparam("alias")))
            )
        for n, with_value in enumerate(tags):
            cond = [vt.c.key == sa.bindparam(f"tk{n}")]
            if with_value:
                cond.append(vt.c.value == sa.bindparam(f"tv{n}"))
            ids = ids.where(mv.c.id.in_(sa.select(vt.c.version_id).where(*cond)))
        for n, op in enumerate(metric_ops):
            cond = [vm.c.key == sa.bindparam(f"mk{n}"), OPS[op](vm.c.value, sa.bindparam(f"mv{n}"))]
            ids = ids.where(mv.c.id.in_(sa.select(vm.c.version_id).where(*cond)))
        if after:
            ids = ids.where(mv.c.id < sa.bindparam("after"))
        ids = ids.order_by(mv.c.id.desc()).limit(sa.bindparam("limit"))
        statement = (
            sa.select(*self.columns).select_from(self.source).where(mv.c.id.in_(ids)).order_by(mv.c.id.desc())
        )
        self._pages[key] = statement
        return statement


def to_version(row: Sequence[Any]) -> ModelVersion:
    """Build a :class:`ModelVersion` from a row of :attr:`VersionQueries.columns`."""
    (
        vid,
        number,
        semver,
        stage,
        framework,
        description,
        changelog,
        code_version,
        flow_run_id,
        created_by,
        created_at,
        stage_updated_at,
        model,
        uri,
        content_hash,
        parent,
        document,
    ) = row
    doc = document if document.__class__ is dict else json.loads(document)
    arts, aliases = doc["r"], doc["a"]
    # Built without the frozen dataclass's __init__ (which sets each field through
    # object.__setattr__): the same fields, the same record, a third of the time.
    version = _new(ModelVersion)
    version.__dict__.update(
        id=vid,
        model=model,
        number=number,
        semver=semver,
        stage=stage,
        framework=framework,
        description=description,
        changelog=changelog,
        metrics=doc["m"] or {},
        hyperparameters=doc["h"] or {},
        tags=doc["t"] or {},
        signature=doc["s"],
        extra=doc["x"] or {},
        dataset_uri=uri,
        dataset_hash=content_hash,
        code_version=code_version,
        flow_run_id=flow_run_id,
        parent_version=parent,
        created_by=created_by,
        created_at=_timestamp(created_at),
        stage_updated_at=_timestamp(stage_updated_at),
        artifacts=tuple(sorted((Artifact(*a) for a in arts), key=lambda a: a.name)) if arts else (),
        aliases=tuple(sorted(aliases)) if aliases else (),
    )
    return version
