"""What may change after registration: a version's tags and ``extra`` metadata, tags removed.

Metrics, files, data and lineage stay as registered; every change here is
audited in its transaction. (Setting a model's tag is in :mod:`storage.registry.core`.)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.audit import append_entry
from storage.errors import ValidationError
from storage.registry.reads import RegistryReads, VersionRef
from storage.registry.records import ModelVersion
from storage.validation import check_json, check_tags


class VersionUpdatesMixin(RegistryReads):
    """Tag and ``extra`` updates for the registry; needs ``self.actor``."""

    actor: str

    def set_version_extra(
        self, model: str, version: VersionRef, key: str, value: Any, *, actor: str | None = None
    ) -> ModelVersion:
        """Set one key of a version's ``extra`` metadata (e.g. its explainer), audited.

        Metrics, files and lineage stay immutable; ``extra`` holds what is
        learned about a version after it was registered.
        """
        if not isinstance(key, str) or not key:
            raise ValidationError(f"extra key {key!r} must be a non-empty string")
        check_json(f"extra[{key!r}]", value)
        mv = t.model_versions.c
        with self.db.write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            version_id = self._version_id(conn, model_id, model, version)
            extra = dict(conn.execute(sa.select(mv.extra).where(mv.id == version_id)).scalar_one() or {})
            before = extra.get(key)
            extra[key] = value
            conn.execute(t.model_versions.update().where(mv.id == version_id).values(extra=extra))
            number = self._number(conn, version_id)
            append_entry(
                conn,
                actor=actor or self.actor,
                action="version.extra",
                entity_type="model_version",
                entity_id=f"{model}/{number}",
                before={key: before},
                after={key: value},
            )
        return self.get_version(model, number)

    def set_version_tag(
        self, model: str, version: VersionRef, key: str, value: Any, *, actor: str | None = None
    ) -> None:
        """Set one tag on a version."""
        tag = check_tags({key: value})
        vt = t.version_tags.c
        with self.db.write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            version_id = self._version_id(conn, model_id, model, version)
            old = conn.execute(sa.select(vt.value).where(vt.version_id == version_id, vt.key == key)).scalar()
            conn.execute(t.version_tags.delete().where(vt.version_id == version_id, vt.key == key))
            conn.execute(t.version_tags.insert().values(version_id=version_id, key=key, value=tag[key]))
            append_entry(
                conn,
                actor=actor or self.actor,
                action="version.tag",
                entity_type="model_version",
                entity_id=f"{model}/{self._number(conn, version_id)}",
                before={key: old},
                after={key: tag[key]},
            )

    def delete_version_tag(
        self, model: str, version: VersionRef, key: str, *, actor: str | None = None
    ) -> bool:
        """Remove one tag from a version, audited; False (and nothing audited) when it had none."""
        vt = t.version_tags.c
        with self.db.write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            version_id = self._version_id(conn, model_id, model, version)
            old = conn.execute(sa.select(vt.value).where(vt.version_id == version_id, vt.key == key)).scalar()
            if old is None:
                return False
            conn.execute(t.version_tags.delete().where(vt.version_id == version_id, vt.key == key))
            append_entry(
                conn,
                actor=actor or self.actor,
                action="version.untag",
                entity_type="model_version",
                entity_id=f"{model}/{self._number(conn, version_id)}",
                before={key: old},
                after={key: None},
            )
        return True

    def delete_model_tag(self, name: str, key: str, *, actor: str | None = None) -> bool:
        """Remove one tag from a model, audited; False (and nothing audited) when it had none."""
        mt = t.model_tags.c
        with self.db.write() as conn:
            model_id = self._model_id(conn, name, lock=True)
            old = conn.execute(sa.select(mt.value).where(mt.model_id == model_id, mt.key == key)).scalar()
            if old is None:
                return False
            conn.execute(t.model_tags.delete().where(mt.model_id == model_id, mt.key == key))
            append_entry(
                conn,
                actor=actor or self.actor,
                action="model.untag",
                entity_type="model",
                entity_id=name,
                before={key: old},
                after={key: None},
            )
        return True
