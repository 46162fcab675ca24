"""Feature definitions in the metadata database: entities, groups, features, lineage.

An *entity* names the join keys (``driver_id``); a *feature group* is the unit
of ingestion and materialization: one entity, an event-time column, an
optional availability-time column (when a value became known) and a TTL. A
*feature* belongs to one group, has a type, an owner, tags and a lifecycle
(draft → active → deprecated → archived). Changing a feature's type creates a
new version; older versions keep their stored values. Every change is written
to the audit log in the same transaction.

A feature is referred to as ``group:feature`` (newest version),
``group:feature@2`` (a given version) or ``group:*`` (every readable feature
of the group).

Example:
    >>> from storage.db import Database
    >>> from storage.features.definitions import FeatureDefinitions
    >>> defs = FeatureDefinitions(Database("sqlite:///:memory:"), actor="ana")
    >>> _ = defs.create_entity("driver", join_keys=["driver_id"])
    >>> _ = defs.create_group("trips", entity="driver", event_time_column="ts", ttl_seconds=3600)
    >>> defs.register_feature("trips", "fare", "float", owner="ana").version
    1
    >>> defs.register_feature("trips", "fare", "int").version  # a type change is a new version
    2
    >>> [f.ref for f in defs.resolve(["trips:fare", "trips:fare@1"])]
    ['trips:fare@2', 'trips:fare@1']
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage.audit import append_entry
from storage.db import Database, inserted_id
from storage.errors import AlreadyExistsError, NotFoundError, TransitionError, ValidationError
from storage.features.records import (
    DTYPES,
    STATUSES,
    TRANSITIONS,
    Entity,
    Feature,
    FeatureDeprecatedWarning,
    FeatureGroup,
    check_identifier,
    parse_ref,
    quote,
)
from storage.schema import feature_entities, feature_groups, feature_usage, features, utcnow

__all__ = [
    "Entity",
    "Feature",
    "FeatureDefinitions",
    "FeatureDeprecatedWarning",
    "FeatureGroup",
    "check_identifier",
    "parse_ref",
    "quote",
]


def _entity(row: Any) -> Entity:
    return Entity(row.name, tuple(row.join_keys), row.description, row.owner)


def _feature(row: Any, group: str) -> Feature:
    return Feature(
        group,
        row.name,
        row.version,
        row.dtype,
        row.status,
        row.description,
        row.source,
        row.transformation,
        row.owner,
        dict(row.tags or {}),
    )


class FeatureDefinitions:
    """Read and change feature definitions in one metadata database.

    Args:
        db: The metadata database.
        actor: Who makes changes (recorded in the audit log).
    """

    def __init__(self, db: Database, *, actor: str = "unknown") -> None:
        self.db = db
        self.actor = actor
        self.generation = 0  # bumped by every change made through this object

    # ------------------------------------------------------------ entities
    def create_entity(
        self, name: str, *, join_keys: Sequence[str], description: str = "", owner: str | None = None
    ) -> Entity:
        """Create an entity with its join keys; raise AlreadyExistsError when taken."""
        check_identifier(name, "entity name")
        keys = [check_identifier(k, "join key") for k in join_keys]
        if not keys or len(set(keys)) != len(keys):
            raise ValidationError(f"entity {name!r} needs one or more distinct join keys, got {keys}")
        self.generation += 1
        with self.db.write() as conn:
            if conn.execute(sa.select(feature_entities.c.id).where(feature_entities.c.name == name)).first():
                raise AlreadyExistsError(f"entity {name!r} already exists")
            conn.execute(
                feature_entities.insert().values(
                    name=name,
                    join_keys=keys,
                    description=description,
                    owner=owner,
                    created_by=self.actor,
                    created_at=utcnow(),
                )
            )
            entity = Entity(name, tuple(keys), description, owner)
            append_entry(
                conn,
                actor=self.actor,
                action="feature_entity.create",
                entity_type="feature_entity",
                entity_id=name,
                after=entity.to_dict(),
            )
        return entity

    def get_entity(self, name: str) -> Entity:
        """The entity called ``name``; NotFoundError when there is none."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(feature_entities).where(feature_entities.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"entity {name!r} does not exist")
        return _entity(row)

    # -------------------------------------------------------------- groups
    def create_group(
        self,
        name: str,
        *,
        entity: str,
        event_time_column: str,
        available_time_column: str | None = None,
        ttl_seconds: int | None = None,
        source: str = "",
        description: str = "",
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> FeatureGroup:
        """Create a feature group over ``entity``; raise AlreadyExistsError when taken."""
        check_identifier(name, "group name")
        check_identifier(event_time_column, "event-time column")
        if available_time_column is not None:
            check_identifier(available_time_column, "availability-time column")
            if available_time_column == event_time_column:
                raise ValidationError("the availability-time column must differ from the event-time column")
        if ttl_seconds is not None and (not isinstance(ttl_seconds, int) or ttl_seconds <= 0):
            raise ValidationError(f"ttl_seconds must be a positive integer, got {ttl_seconds!r}")
        now = utcnow()
        self.generation += 1
        with self.db.write() as conn:
            ent = conn.execute(sa.select(feature_entities).where(feature_entities.c.name == entity)).first()
            if ent is None:
                raise NotFoundError(f"entity {entity!r} does not exist")
            if event_time_column in ent.join_keys or available_time_column in ent.join_keys:
                raise ValidationError("time columns must differ from the entity's join keys")
            if conn.execute(sa.select(feature_groups.c.id).where(feature_groups.c.name == name)).first():
                raise AlreadyExistsError(f"feature group {name!r} already exists")
            conn.execute(
                feature_groups.insert().values(
                    name=name,
                    entity_id=ent.id,
                    event_time_column=event_time_column,
                    available_time_column=available_time_column,
                    ttl_seconds=ttl_seconds,
                    source=source,
                    description=description,
                    owner=owner,
                    tags=dict(tags or {}),
                    created_by=self.actor,
                    created_at=now,
                    updated_at=now,
                )
            )
            group = FeatureGroup(
                name,
                entity,
                tuple(ent.join_keys),
                event_time_column,
                available_time_column,
                ttl_seconds,
                source,
                description,
                owner,
                dict(tags or {}),
            )
            append_entry(
                conn,
                actor=self.actor,
                action="feature_group.create",
                entity_type="feature_group",
                entity_id=name,
                after=group.to_dict(),
            )
        return group

    def _group_row(self, conn: Connection, name: str) -> Any:
        check_identifier(name, "group name")
        row = conn.execute(
            sa.select(
                feature_groups, feature_entities.c.name.label("entity_name"), feature_entities.c.join_keys
            )
            .join(feature_entities, feature_entities.c.id == feature_groups.c.entity_id)
            .where(feature_groups.c.name == name)
        ).first()
        if row is None:
            raise NotFoundError(f"feature group {name!r} does not exist")
        return row

    @staticmethod
    def _to_group(row: Any) -> FeatureGroup:
        return FeatureGroup(
            row.name,
            row.entity_name,
            tuple(row.join_keys),
            row.event_time_column,
            row.available_time_column,
            row.ttl_seconds,
            row.source,
            row.description,
            row.owner,
            dict(row.tags or {}),
        )

    def get_group(self, name: str) -> FeatureGroup:
        """The feature group called ``name``; NotFoundError when there is none."""
        with self.db.read() as conn:
            return self._to_group(self._group_row(conn, name))

    def list_groups(self) -> list[FeatureGroup]:
        """Every feature group, by name."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(
                    feature_groups, feature_entities.c.name.label("entity_name"), feature_entities.c.join_keys
                )
                .join(feature_entities, feature_entities.c.id == feature_groups.c.entity_id)
                .order_by(feature_groups.c.name)
            ).all()
        return [self._to_group(r) for r in rows]

    # ------------------------------------------------------------ features
    def register_feature(
        self,
        group: str,
        name: str,
        dtype: str,
        *,
        description: str = "",
        source: str = "",
        transformation: str = "",
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
        status: str = "active",
    ) -> Feature:
        """Create a feature, update its metadata, or add a version when its type changes.

        A new feature (or a new version) starts in ``status`` (default
        ``active``; pass ``draft`` to stage it). Registering the same type
        again updates description, source, transformation, owner and tags.
        """
        check_identifier(name, "feature name")
        if dtype not in DTYPES:
            raise ValidationError(f"feature {name!r}: type {dtype!r} is not one of {', '.join(DTYPES)}")
        if status not in ("draft", "active"):
            raise ValidationError(f"a new feature starts as draft or active, not {status!r}")
        now = utcnow()
        values = {
            "description": description,
            "source": source,
            "transformation": transformation,
            "owner": owner,
            "tags": dict(tags or {}),
            "updated_at": now,
        }
        self.generation += 1
        with self.db.write() as conn:
            grow = self._group_row(conn, group)
            if name in grow.join_keys or name in (grow.event_time_column, grow.available_time_column):
                raise ValidationError(f"feature {name!r} collides with a key or time column of {group!r}")
            latest = conn.execute(
                sa.select(features)
                .where(features.c.group_id == grow.id, features.c.name == name)
                .order_by(features.c.version.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.dtype == dtype:
                conn.execute(features.update().where(features.c.id == latest.id).values(**values))
                action, version, st = "feature.update", latest.version, latest.status
                before: Any = _feature(latest, group).to_dict()
            else:
                version = 1 if latest is None else latest.version + 1
                inserted_id(
                    conn,
                    features.insert().values(
                        group_id=grow.id,
                        name=name,
                        version=version,
                        dtype=dtype,
                        status=status,
                        created_by=self.actor,
                        created_at=now,
                        **values,
                    ),
                )
                action, st, before = (
                    "feature.create" if latest is None else "feature.new_version",
                    status,
                    None,
                )
            feat = Feature(
                group, name, version, dtype, st, description, source, transformation, owner, dict(tags or {})
            )
            append_entry(
                conn,
                actor=self.actor,
                action=action,
                entity_type="feature",
                entity_id=feat.ref,
                before=before,
                after=feat.to_dict(),
            )
        return feat

    def transition(self, ref: str, status: str, *, reason: str = "") -> Feature:
        """Move a feature version to ``status``; TransitionError when not allowed."""
        if status not in STATUSES:
            raise ValidationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        group, name, version = parse_ref(ref)
        self.generation += 1
        with self.db.write() as conn:
            grow = self._group_row(conn, group)
            row = self._feature_row(conn, grow.id, group, name, version)
            if status not in TRANSITIONS[row.status]:
                raise TransitionError(
                    f"feature {group}:{name}@{row.version} cannot move from {row.status} to {status}"
                )
            conn.execute(
                features.update().where(features.c.id == row.id).values(status=status, updated_at=utcnow())
            )
            feat = _feature(row, group)
            after = Feature(**{**asdict(feat), "status": status})
            append_entry(
                conn,
                actor=self.actor,
                action="feature.transition",
                entity_type="feature",
                entity_id=feat.ref,
                before={"status": row.status},
                after={"status": status, "reason": reason},
            )
        return after

    @staticmethod
    def _feature_row(conn: Connection, group_id: int, group: str, name: str, version: int | None) -> Any:
        query = sa.select(features).where(features.c.group_id == group_id, features.c.name == name)
        if version is not None:
            query = query.where(features.c.version == version)
        row = conn.execute(query.order_by(features.c.version.desc()).limit(1)).first()
        if row is None:
            at = f"@{version}" if version is not None else ""
            raise NotFoundError(f"feature {group}:{name}{at} does not exist")
        return row

    def list_features(self, group: str | None = None, *, all_versions: bool = False) -> list[Feature]:
        """Features (newest version of each unless ``all_versions``), by group and name."""
        query = (
            sa.select(features, feature_groups.c.name.label("group_name"))
            .join(feature_groups, feature_groups.c.id == features.c.group_id)
            .order_by(feature_groups.c.name, features.c.name, features.c.version)
        )
        if group is not None:
            query = query.where(feature_groups.c.name == group)
        with self.db.read() as conn:
            if group is not None:
                self._group_row(conn, group)
            rows = conn.execute(query).all()
        out = [_feature(r, r.group_name) for r in rows]
        if all_versions:
            return out
        newest: dict[tuple[str, str], Feature] = {}
        for f in out:
            newest[(f.group, f.name)] = f
        return list(newest.values())

    def resolve(self, refs: Iterable[str], *, allow_archived: bool = False) -> list[Feature]:
        """Resolve feature references to feature versions, in order.

        Raises NotFoundError for an unknown group or feature and
        ValidationError for an archived one; warns with
        :class:`FeatureDeprecatedWarning` for a deprecated one.
        """
        out: list[Feature] = []
        with self.db.read() as conn:
            for ref in refs:
                group, name, version = parse_ref(ref, allow_star=True)
                grow = self._group_row(conn, group)
                query = sa.select(features).where(features.c.group_id == grow.id)
                if name != "*":
                    query = query.where(features.c.name == name)
                if version is not None:
                    query = query.where(features.c.version == version)
                by_name: dict[str, list[Any]] = {}
                for row in conn.execute(query.order_by(features.c.name, features.c.version.desc())):
                    by_name.setdefault(row.name, []).append(row)
                if name != "*" and not by_name:
                    at = f"@{version}" if version is not None else ""
                    raise NotFoundError(f"feature {group}:{name}{at} does not exist")
                for rows in by_name.values():
                    # Without a version: the newest active or deprecated one, else the newest
                    # (a draft version does not take over until it is activated).
                    serving = [r for r in rows if r.status in ("active", "deprecated")]
                    row = rows[0] if version is not None else (serving or rows)[0]
                    if name != "*" or row.status != "archived":
                        out.append(_feature(row, group))
        for feat in out:
            if feat.status == "archived" and not allow_archived:
                raise ValidationError(f"feature {feat.ref} is archived and can no longer be read")
            if feat.status == "deprecated":
                warnings.warn(f"feature {feat.ref} is deprecated", FeatureDeprecatedWarning, stacklevel=3)
        seen: set[str] = set()
        unique = [f for f in out if not (f.ref in seen or seen.add(f.ref))]  # type: ignore[func-returns-value]
        return unique

    # ------------------------------------------------------------- lineage
    def record_usage(
        self, refs: Sequence[str], *, model: str, version: str | int, flow_run_id: str | None = None
    ) -> list[str]:
        """Record that a model version was trained on these feature versions (idempotent)."""
        feats = self.resolve(refs, allow_archived=True)
        self.generation += 1
        with self.db.write() as conn:
            for feat in feats:
                grow = self._group_row(conn, feat.group)
                row = self._feature_row(conn, grow.id, feat.group, feat.name, feat.version)
                exists = conn.execute(
                    sa.select(feature_usage.c.id).where(
                        feature_usage.c.feature_id == row.id,
                        feature_usage.c.model_name == model,
                        feature_usage.c.model_version == str(version),
                    )
                ).first()
                if exists:
                    continue
                conn.execute(
                    feature_usage.insert().values(
                        feature_id=row.id,
                        model_name=model,
                        model_version=str(version),
                        flow_run_id=flow_run_id,
                        recorded_by=self.actor,
                        recorded_at=utcnow(),
                    )
                )
            append_entry(
                conn,
                actor=self.actor,
                action="feature.usage",
                entity_type="model_version",
                entity_id=f"{model}/{version}",
                after=[f.ref for f in feats],
            )
        return [f.ref for f in feats]

    def lineage(self, group: str) -> dict[str, Any]:
        """Source → group → feature versions → the model versions trained on them."""
        g = self.get_group(group)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(
                    features.c.name,
                    features.c.version,
                    feature_usage.c.model_name,
                    feature_usage.c.model_version,
                )
                .join(feature_groups, feature_groups.c.id == features.c.group_id)
                .join(feature_usage, feature_usage.c.feature_id == features.c.id)
                .where(feature_groups.c.name == group)
                .order_by(features.c.name, features.c.version, feature_usage.c.model_name)
            ).all()
        models: dict[str, list[str]] = {}
        for r in rows:
            models.setdefault(f"{group}:{r.name}@{r.version}", []).append(f"{r.model_name}/{r.model_version}")
        return {"source": g.source, "group": group, "features": models}
