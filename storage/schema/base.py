"""The one ``MetaData`` every table is defined on, the UTC timestamp column type, and ``utcnow``.

Every table module of ``storage.schema`` defines its tables on
:data:`metadata`, so the migrations, ``create_all`` and the schema test see
one schema.

Example:
    >>> from datetime import datetime
    >>> UTCDateTime().process_bind_param(datetime(2024, 1, 1, 12), None).isoformat()
    '2024-01-01T12:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

__all__ = ["UTCDateTime", "metadata", "utcnow"]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


metadata = sa.MetaData()
