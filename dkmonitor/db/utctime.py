"""The one column type of every stored time: naive UTC in Python, an instant in PostgreSQL.

dkmonitor's code compares naive UTC datetimes everywhere (``dkmonitor.clock``):
SQLite has no time zones, and mixing aware and naive values is a bug farm.
But a PostgreSQL column of type ``timestamp`` (without time zone) holding
UTC wall-clock times misleads everyone who queries it by hand: ``now() -
started_at`` is off by the server's UTC offset, and a dashboard in New York
shows every scan five hours early. Since migration 0009 those columns are
``timestamp with time zone`` (an instant), and this type keeps the Python
side unchanged:

- on PostgreSQL a naive value is bound as UTC (tzinfo attached), and a value
  read back is converted to UTC and made naive again, whatever the session's
  ``TimeZone``;
- on SQLite the column stays a plain ``DATETIME`` holding naive UTC text.

An aware value given by mistake is converted to UTC rather than stored as
its wall-clock time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from dkmonitor.clock import naive_utc


class UTCDateTime(TypeDecorator[datetime]):
    """A time stored as ``timestamptz`` on PostgreSQL, handed to Python as naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        timezone = dialect.name == "postgresql"
        return dialect.type_descriptor(DateTime(timezone=timezone))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = naive_utc(value)
        return value.replace(tzinfo=UTC) if dialect.name == "postgresql" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)
