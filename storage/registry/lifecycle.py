"""Lifecycle of versions: stage moves, aliases and rollback.

Stage moves follow :data:`~storage.registry.records.ALLOWED_TRANSITIONS`; an illegal
move names the allowed ones. Promoting to production demotes the previous
holder, and an alias can move with the stage, all in one transaction with the
audit entries. :meth:`LifecycleMixin.move_stage` does the work on a caller's
connection so that other stores (approvals) can add their own rows to the
same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage import schema as t
from storage.audit import append_entry
from storage.errors import NotFoundError, TransitionError, ValidationError
from storage.registry.reads import RegistryReads, VersionRef
from storage.registry.records import ALLOWED_TRANSITIONS, STAGES, AliasMove, ModelVersion, Record

_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
RESERVED_ALIASES = frozenset({"latest", *STAGES})


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias name, else raise ValidationError."""
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias in RESERVED_ALIASES:
        raise ValidationError(
            f"alias {alias!r} is invalid: start with a letter, use letters, digits, '_' or '-', "
            f"and avoid the reserved names {', '.join(sorted(RESERVED_ALIASES))}"
        )
    return alias


@dataclass(frozen=True)
class Rollback(Record):
    """What a rollback did: which version it restored and which it replaced."""

    model: str
    stage: str
    alias: str
    restored_version: int
    replaced_version: int


class LifecycleMixin(RegistryReads):
    """Stage moves and aliases; needs ``self.db`` and ``self.actor``."""

    actor: str

    def transition_stage(
        self,
        model: str,
        version: VersionRef,
        stage: str,
        *,
        reason: str = "",
        actor: str | None = None,
        demote_to: str = "archived",
        allow_multiple: bool = False,
        alias: str | None = None,
    ) -> ModelVersion:
        """Move a version to another lifecycle stage.

        Promoting to production moves the previous production version(s) to
        ``demote_to`` in the same transaction, unless ``allow_multiple``.
        ``alias`` (e.g. ``champion``) is moved to this version in that
        transaction too.
        """
        with self.db.write() as conn:
            number = self.move_stage(
                conn,
                model,
                version,
                stage,
                reason=reason,
                actor=actor or self.actor,
                demote_to=demote_to,
                allow_multiple=allow_multiple,
                alias=alias,
            )
        return self.get_version(model, number)

    def move_stage(
        self,
        conn: Connection,
        model: str,
        version: VersionRef,
        stage: str,
        *,
        reason: str,
        actor: str,
        demote_to: str = "archived",
        allow_multiple: bool = False,
        alias: str | None = None,
        enforce_transitions: bool = True,
    ) -> int:
        """:meth:`transition_stage` inside the caller's write transaction; returns the number."""
        if stage not in STAGES:
            raise ValidationError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
        if demote_to not in ("archived", "staging"):
            raise ValidationError(f"demote_to {demote_to!r} must be 'archived' or 'staging'")
        if alias is not None:
            check_alias(alias)
        mv = t.model_versions.c
        model_id = self._model_id(conn, model, lock=True)
        version_id = self._version_id(conn, model_id, model, version)
        number, current = conn.execute(sa.select(mv.number, mv.stage).where(mv.id == version_id)).one()
        self.check_transition(model, number, current, stage, enforce=enforce_transitions)
        if stage == "production" and not allow_multiple:
            holders = conn.execute(
                sa.select(mv.id).where(mv.model_id == model_id, mv.stage == "production", mv.id != version_id)
            ).scalars()
            for holder in list(holders):
                self._set_stage(conn, model, holder, "production", demote_to, actor, f"replaced by {number}")
        self._set_stage(conn, model, version_id, current, stage, actor, reason)
        if alias is not None:
            self._move_alias(conn, model, model_id, alias, version_id, actor, reason)
        return int(number)

    @staticmethod
    def check_transition(model: str, number: int, current: str, stage: str, *, enforce: bool = True) -> None:
        """Raise TransitionError when ``current`` → ``stage`` is not allowed."""
        if current == stage:
            raise TransitionError(f"{model} version {number} is already in {stage}")
        allowed = ALLOWED_TRANSITIONS[current]
        if enforce and stage not in allowed:
            raise TransitionError(
                f"cannot move {model} version {number} from {current} to {stage}: "
                f"allowed from {current}: {', '.join(allowed)}"
            )

    def _set_stage(
        self, conn: Connection, model: str, version_id: int, old: str, new: str, actor: str, reason: str
    ) -> None:
        now = t.utcnow()
        conn.execute(
            t.model_versions.update()
            .where(t.model_versions.c.id == version_id)
            .values(stage=new, stage_updated_at=now)
        )
        conn.execute(
            t.stage_history.insert().values(
                version_id=version_id, from_stage=old, to_stage=new, actor=actor, reason=reason, at=now
            )
        )
        append_entry(
            conn,
            actor=actor,
            action="version.stage",
            entity_type="model_version",
            entity_id=f"{model}/{self._number(conn, version_id)}",
            before={"stage": old},
            after={"stage": new, "reason": reason},
        )

    # ---------------------------------------------------------------- aliases
    def set_alias(
        self, model: str, alias: str, version: VersionRef, *, reason: str = "", actor: str | None = None
    ) -> AliasMove:
        """Point ``alias`` at a version, recording the move in the alias history."""
        check_alias(alias)
        with self.db.write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            version_id = self._version_id(conn, model_id, model, version)
            return self._move_alias(conn, model, model_id, alias, version_id, actor or self.actor, reason)

    def delete_alias(
        self, model: str, alias: str, *, reason: str = "", actor: str | None = None
    ) -> AliasMove:
        """Remove an alias (recorded as a move to no version)."""
        with self.db.write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            return self._move_alias(conn, model, model_id, alias, None, actor or self.actor, reason)

    def _move_alias(
        self,
        conn: Connection,
        model: str,
        model_id: int,
        alias: str,
        version_id: int | None,
        actor: str,
        reason: str,
        *,
        is_rollback: bool = False,
    ) -> AliasMove:
        a = t.aliases.c
        old_id = conn.execute(
            sa.select(a.version_id).where(a.model_id == model_id, a.alias == alias)
        ).scalar()
        if version_id is None and old_id is None:
            raise NotFoundError(f"model {model!r} has no alias {alias!r}")
        now = t.utcnow()
        conn.execute(t.aliases.delete().where(a.model_id == model_id, a.alias == alias))
        if version_id is not None:
            conn.execute(
                t.aliases.insert().values(
                    model_id=model_id, alias=alias, version_id=version_id, updated_by=actor, updated_at=now
                )
            )
        conn.execute(
            t.alias_history.insert().values(
                model_id=model_id,
                alias=alias,
                from_version_id=old_id,
                to_version_id=version_id,
                actor=actor,
                reason=reason,
                is_rollback=is_rollback,
                at=now,
            )
        )
        old_n = self._number(conn, old_id) if old_id is not None else None
        new_n = self._number(conn, version_id) if version_id is not None else None
        append_entry(
            conn,
            actor=actor,
            action="alias.move",
            entity_type="model",
            entity_id=model,
            before={"alias": alias, "version": old_n},
            after={"alias": alias, "version": new_n, "reason": reason},
        )
        return AliasMove(model, alias, old_n, new_n, actor, reason, now)

    # --------------------------------------------------------------- rollback
    def rollback(
        self,
        model: str,
        *,
        stage: str = "production",
        alias: str = "champion",
        reason: str = "",
        actor: str | None = None,
    ) -> Rollback:
        """Return ``stage`` (and ``alias``) to the version that held the alias before.

        The alias history is read as a stack: each move pushes a version, each
        rollback pops one, so rolling back twice goes two versions back rather
        than between the same two. The replaced version is archived. Stage,
        alias and audit entries move in one transaction.
        """
        who = actor or self.actor
        with self.db.write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            stack = self._alias_stack(conn, model_id, alias)
            if not stack:
                raise NotFoundError(f"model {model!r} has no alias {alias!r} to roll back")
            if len(stack) < 2:
                raise NotFoundError(f"{model!r} alias {alias!r} has no earlier version to roll back to")
            current, previous = stack[-1], stack[-2]
            replaced, restored = self._number(conn, current), self._number(conn, previous)
            text = reason or f"rollback of {stage} from version {replaced} to {restored}"
            current_stage = conn.execute(
                sa.select(t.model_versions.c.stage).where(t.model_versions.c.id == current)
            ).scalar_one()
            self.move_stage(conn, model, restored, stage, reason=text, actor=who, enforce_transitions=False)
            if stage != "production" and current_stage == stage:  # production demotes by itself
                self._set_stage(conn, model, current, stage, "archived", who, text)
            self._move_alias(conn, model, model_id, alias, previous, who, text, is_rollback=True)
            append_entry(
                conn,
                actor=who,
                action="version.rollback",
                entity_type="model",
                entity_id=model,
                before={"stage": stage, "alias": alias, "version": replaced},
                after={"stage": stage, "alias": alias, "version": restored, "reason": text},
            )
        return Rollback(model, stage, alias, restored, replaced)

    def _alias_stack(self, conn: Connection, model_id: int, alias: str) -> list[int]:
        """Versions the alias pointed at, oldest first, with rolled-back moves popped."""
        h = t.alias_history.c
        stack: list[int] = []
        rows = conn.execute(
            sa.select(h.to_version_id, h.is_rollback)
            .where(h.model_id == model_id, h.alias == alias)
            .order_by(h.id)
        )
        for to_version, is_rollback in rows:
            if to_version is None:  # the alias was deleted: history before it no longer applies
                stack = []
            elif is_rollback and len(stack) >= 2 and stack[-2] == to_version:
                stack.pop()
            else:
                stack.append(to_version)
        return stack
