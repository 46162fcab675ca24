"""Alembic environment: runs on the connection handed in by ``storage.db``."""

from __future__ import annotations

from alembic import context

from storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI path of alembic is not used
    raise RuntimeError("storage migrations run through storage.db.ensure_schema()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
