"""`dkmonitor view growth`: who grew most over a window, per host and target.

For each host/target the newest good full scan is compared with the newest
good full scan started at or before the window's start (``now - window``);
where the history is shorter than the window, with its oldest good full scan
inside the window. A user's growth is the difference of their bytes between
the two (a user absent from the earlier scan grew from 0). Plain SQL on a
``ReadConnection``, so it runs the same on both databases and on the view's
fast path; the HTML report reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dkmonitor.clock import parse_time
from dkmonitor.db.queries import latest_full_scans, user_columns
from dkmonitor.db.readonly import ReadConnection
from dkmonitor.units import iso_utc

GROWTH_KEYS = (
    "task",
    "hostname",
    "target_path",
    "username",
    "uid",
    "since",
    "scanned_at",
    "bytes_before",
    "bytes",
    "growth_bytes",
)


@dataclass(frozen=True)
class GrowthRecord:
    """One user's growth on one host/target between two full scans."""

    task: str
    hostname: str
    target_path: str
    username: str
    uid: int
    since: datetime  # the earlier scan's start
    scanned_at: datetime  # the newest scan's start
    bytes_before: int
    bytes: int

    @property
    def growth_bytes(self) -> int:
        return self.bytes - self.bytes_before

    def as_json(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in GROWTH_KEYS}
        data["since"] = iso_utc(self.since)
        data["scanned_at"] = iso_utc(self.scanned_at)
        return data


_GOOD_FULL_AT = (
    "SELECT id, started_at FROM scans WHERE kind = 'full' AND status = 'ok' "
    "AND hostname = ? AND target_path = ? AND started_at {op} ? "
    "ORDER BY started_at {order}, id {order} LIMIT 1"
)


def _baseline(
    reader: ReadConnection, hostname: str, path: str, start: datetime
) -> tuple[int, datetime] | None:
    """The scan a place's growth is measured from (see the module's docstring)."""
    for op, order in (("<=", "DESC"), (">", "ASC")):
        sql = _GOOD_FULL_AT.format(op=op, order=order)
        rows = reader.rows(sql, [hostname, path, reader.time_param(start)])
        if rows:
            return rows[0][0], parse_time(rows[0][1])
    return None


def growth_records(
    reader: ReadConnection,
    window: timedelta,
    now: datetime,
    hostname: str | None = None,
    top: int = 10,
) -> list[GrowthRecord]:
    """Per host/target, the ``top`` users whose bytes grew most in ``window`` before ``now``.

    Only users who grew (growth > 0) are listed. Ordered by host, target,
    then growth (largest first) and name. ``now`` is naive UTC, as stored.
    """
    records: list[GrowthRecord] = []
    for latest in latest_full_scans(reader, hostname):
        base = _baseline(reader, latest.hostname, latest.target_path, now - window)
        if base is None or base[0] == latest.id:
            continue
        base_id, since = base
        before: dict[str, int] = {}
        after: list[tuple[str, int, int]] = []
        rows = user_columns(reader, ("uid", "bytes"), [base_id, latest.id])
        for scan_id, name, uid, size in rows:
            if scan_id == base_id:
                before[name] = size
            else:
                after.append((name, uid, size))
        grown = [
            GrowthRecord(
                task=latest.task_name,
                hostname=latest.hostname,
                target_path=latest.target_path,
                username=name,
                uid=uid,
                since=since,
                scanned_at=latest.started_at,
                bytes_before=before.get(name, 0),
                bytes=size,
            )
            for name, uid, size in after
        ]
        grown = [r for r in grown if r.growth_bytes > 0]
        grown.sort(key=lambda r: (-r.growth_bytes, r.username))
        records += grown[:top]
    records.sort(key=lambda r: (r.hostname, r.target_path))  # stable: growth order kept
    return records
