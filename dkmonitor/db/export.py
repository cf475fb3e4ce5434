"""`database export`: the scan history as flat records, for analysis elsewhere.

Shape (documented in the command's help): one record per scan for the whole
target (``username`` and ``uid`` null), followed by one record per user of
that scan (full scans only). The keys are those of ``view --format json``
(DESIGN.md) preceded by ``run_id`` (joins a user record to its scan),
``kind`` (quick | full) and ``status`` (ok | failed). Scans come oldest first.
Records are produced lazily so a long history never sits in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from dkmonitor.db.models import Scan, UserStat
from dkmonitor.metrics import NAMES, VIEW_KEYS, values_from_row
from dkmonitor.units import iso_utc

EXPORT_KEYS = ("run_id", "kind", "status", *VIEW_KEYS)

_BATCH = 500
_USER = "u_"  # label prefix of the user_stats columns in the joined rows


def _query(since: datetime | None) -> Select[Any]:
    """scans LEFT JOIN user_stats, each scan's user rows right after it, largest first."""
    scan, user = Scan.__table__.c, UserStat.__table__.c
    columns = [
        scan.id,
        scan.run_id,
        scan.kind,
        scan.status,
        scan.task_name,
        scan.hostname,
        scan.target_path,
        scan.started_at,
        scan.disk_use_percent,
        scan.errors,
        *(scan[name] for name in NAMES),
        user.username.label(_USER + "username"),
        user.uid.label(_USER + "uid"),
        *(user[name].label(_USER + name) for name in NAMES),
    ]
    query = (
        select(*columns)
        .select_from(Scan.__table__.outerjoin(UserStat.__table__, user.scan_id == scan.id))
        .order_by(scan.started_at, scan.id, user.bytes.desc(), user.username)
        .execution_options(yield_per=_BATCH)
    )
    if since is not None:
        query = query.where(scan.started_at >= since)
    return query


def _record(row: Row[Any], user: bool) -> dict[str, Any]:
    """One export record (EXPORT_KEYS, in order): the scan's, or its user's when ``user``."""
    values = row._mapping
    data: dict[str, Any] = {
        "run_id": row.run_id,
        "kind": row.kind,
        "status": row.status,
        "task": row.task_name,
        "hostname": row.hostname,
        "target_path": row.target_path,
        "username": row.u_username if user else None,
        "uid": row.u_uid if user else None,
        "scanned_at": iso_utc(row.started_at),
        "disk_use_percent": row.disk_use_percent,
        "errors": row.errors,
        **values_from_row(values, _USER if user else ""),
    }
    return {key: data[key] for key in EXPORT_KEYS}


def export_records(session: Session, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Yield export records (EXPORT_KEYS, in order) of scans started at or after ``since``.

    One streamed pass over the join; a scan's record is emitted when its
    first row arrives, then one record per user row.
    """
    last_scan = None
    for row in session.execute(_query(since)):
        if row.id != last_scan:
            last_scan = row.id
            yield _record(row, user=False)
        if row.u_username is not None:
            yield _record(row, user=True)
