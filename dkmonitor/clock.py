"""The one kind of "now" dkmonitor stores: naive UTC.

Lives on its own (not in db/models.py) so that code that only needs the time
(health, notify, clean) does not import the SQLAlchemy models for it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now, the only kind of datetime stored."""
    return datetime.now(UTC).replace(tzinfo=None)
