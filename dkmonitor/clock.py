"""The one source of "now" for stored times: naive UTC (SQLite has no time zones)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now, the only kind of datetime stored."""
    return datetime.now(UTC).replace(tzinfo=None)
