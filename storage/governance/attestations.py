"""Attestations: a named person vouches for a compliance rule, until an expiry.

Some compliance rules cannot be verified from evidence the platform holds (a
data protection impact assessment was carried out, business associate
agreements are signed). For those, a person attests: who, what they state,
for which framework and rule, for one model or for all of them, and until
when. An attestation past its expiry no longer counts. Every attestation is
audited in the transaction that stores it.

The store knows nothing of the rule sets (they live in :mod:`tasks.governance.compliance`);
pass ``known_rules`` (framework → rule ids) to refuse unknown frameworks and
rules, as the ``mlops attest`` command does.

Example:
    >>> import tempfile
    >>> from storage.registry.core import Registry
    >>> from storage.governance.attestations import AttestationStore
    >>> home = tempfile.mkdtemp()
    >>> reg = Registry.open(f"sqlite:///{home}/m.db", f"{home}/a", actor="ana")
    >>> store = AttestationStore(reg, known_rules={"HIPAA": {"hipaa-baa"}})
    >>> a = store.attest("HIPAA", "hipaa-baa", attested_by="Dana Privacy",
    ...                  statement="BAAs signed with every processor", expires_in_days=365)
    >>> store.valid("HIPAA", "hipaa-baa", None).attested_by
    'Dana Privacy'
    >>> store.attest("HIPAA", "nope", attested_by="x", statement="y", expires_in_days=1)
    Traceback (most recent call last):
    ...
    storage.errors.NotFoundError: rule 'nope' is not in framework HIPAA: known rules are hipaa-baa
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from storage import schema as t
from storage.audit import append_entry
from storage.db import inserted_id
from storage.errors import NotFoundError, ValidationError
from storage.registry.core import Registry
from storage.registry.records import Record


@dataclass(frozen=True)
class Attestation(Record):
    """One person's statement that a rule is met, for one model (or all) until ``expires_at``."""

    id: int
    framework: str
    rule_id: str
    model: str | None
    attested_by: str
    statement: str
    created_at: datetime
    expires_at: datetime

    def expired(self, at: datetime | None = None) -> bool:
        """True once ``at`` (default now) has reached the expiry."""
        return (at or t.utcnow()) >= self.expires_at


class AttestationStore:
    """Attestations in the registry's metadata database."""

    def __init__(
        self, registry: Registry, *, known_rules: Mapping[str, Collection[str]] | None = None
    ) -> None:
        self.registry = registry
        self.known_rules = known_rules

    def _check_rule(self, framework: str, rule_id: str) -> None:
        if not isinstance(framework, str) or not framework.strip():
            raise ValidationError(f"framework {framework!r} must be a non-empty name")
        if not isinstance(rule_id, str) or not rule_id.strip():
            raise ValidationError(f"rule id {rule_id!r} must be a non-empty name")
        if self.known_rules is None:
            return
        if framework not in self.known_rules:
            known = ", ".join(sorted(self.known_rules))
            raise NotFoundError(f"compliance framework {framework!r} is unknown: known are {known}")
        rules = self.known_rules[framework]
        if rule_id not in rules:
            listed = ", ".join(sorted(rules))
            raise NotFoundError(f"rule {rule_id!r} is not in framework {framework}: known rules are {listed}")

    def attest(
        self,
        framework: str,
        rule_id: str,
        *,
        attested_by: str,
        statement: str,
        expires_in_days: float,
        model: str | None = None,
        now: datetime | None = None,
    ) -> Attestation:
        """Record that ``attested_by`` vouches for a rule, for ``model`` (None: every model)."""
        self._check_rule(framework, rule_id)
        if not isinstance(attested_by, str) or not attested_by.strip():
            raise ValidationError(f"attested_by {attested_by!r} must name the person who attests")
        if not isinstance(statement, str) or not statement.strip():
            raise ValidationError(f"statement {statement!r} is empty: say what is attested")
        if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int | float):
            raise ValidationError(f"expires_in_days {expires_in_days!r} must be a number of days")
        if not expires_in_days > 0:
            raise ValidationError(f"expires_in_days {expires_in_days!r} must be positive")
        created = now or t.utcnow()
        expires = created + timedelta(days=float(expires_in_days))
        with self.registry.db.write() as conn:
            model_id = None if model is None else self.registry._model_id(conn, model)
            row_id = inserted_id(
                conn,
                t.attestations.insert(),
                {
                    "framework": framework,
                    "rule_id": rule_id,
                    "model_id": model_id,
                    "attested_by": attested_by.strip(),
                    "statement": statement.strip(),
                    "created_at": created,
                    "expires_at": expires,
                },
            )
            append_entry(
                conn,
                actor=attested_by.strip(),
                action="compliance.attest",
                entity_type="attestation",
                entity_id=f"{framework}/{rule_id}" + (f"/{model}" if model else ""),
                after={"id": row_id, "statement": statement.strip(), "expires_at": expires.isoformat()},
            )
        return Attestation(
            row_id, framework, rule_id, model, attested_by.strip(), statement.strip(), created, expires
        )

    def list(
        self,
        *,
        framework: str | None = None,
        model: str | None = None,
        include_expired: bool = False,
        at: datetime | None = None,
    ) -> list[Attestation]:
        """Attestations, newest first; by default only those not yet expired."""
        a = t.attestations.c
        query = (
            sa.select(t.attestations, t.models.c.name.label("model"))
            .select_from(t.attestations.outerjoin(t.models, t.models.c.id == a.model_id))
            .order_by(a.id.desc())
        )
        if framework is not None:
            query = query.where(a.framework == framework)
        if not include_expired:
            query = query.where(a.expires_at > (at or t.utcnow()))
        with self.registry.db.read() as conn:
            if model is not None:
                model_id = self.registry._model_id(conn, model)
                query = query.where(sa.or_(a.model_id == model_id, a.model_id.is_(None)))
            rows = conn.execute(query).all()
        return [
            Attestation(
                r.id, r.framework, r.rule_id, r.model, r.attested_by, r.statement, r.created_at, r.expires_at
            )
            for r in rows
        ]

    def valid(
        self, framework: str, rule_id: str, model: str | None, *, at: datetime | None = None
    ) -> Attestation | None:
        """The newest unexpired attestation of a rule for ``model`` (or for every model), or None."""
        for found in self.list(framework=framework, model=model, at=at):
            if (
                found.rule_id == rule_id
                and found.model in (None, model)
                and found.created_at <= (at or t.utcnow())
            ):
                return found
        return None

    def latest(self, framework: str, rule_id: str, model: str | None) -> Attestation | None:
        """The newest attestation of a rule, expired or not (to say when it lapsed)."""
        for found in self.list(framework=framework, model=model, include_expired=True):
            if found.rule_id == rule_id and found.model in (None, model):
                return found
        return None
