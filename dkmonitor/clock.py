"""The one kind of "now" dkmonitor stores: naive UTC.

Lives on its own (not in db/models.py) so that code that only needs the time
(health, notify, clean) does not import the SQLAlchemy models for it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now, the only kind of datetime stored."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC: an aware one converted, a naive one (UTC already) as is.

    PostgreSQL hands ``timestamp with time zone`` columns back aware, in the
    session's time zone; everything past the database compares naive UTC.
    """
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def parse_time(value: datetime | str) -> datetime:
    """A stored time as the naive UTC datetime SQLAlchemy gives back (``UTCDateTime``).

    psycopg2 returns aware datetimes (``timestamp with time zone``, migration
    0009), turned into naive UTC here; SQLite stores SQLAlchemy's text form
    (``2024-03-01 02:00:00.000000``), which ``fromisoformat`` reads.
    """
    return naive_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))
