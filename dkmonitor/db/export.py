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

from sqlalchemy import select
from sqlalchemy.orm import Session

from dkmonitor.db.models import Scan, UserStat
from dkmonitor.db.queries import JSON_KEYS
from dkmonitor.units import iso_utc

EXPORT_KEYS = ("run_id", "kind", "status", *JSON_KEYS)

_BATCH = 500


def export_records(session: Session, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Yield export records (EXPORT_KEYS, in order) of scans started at or after ``since``.

    One streamed pass over scans LEFT JOIN user_stats, ordered so each scan's
    user rows follow it; the scan record is emitted when its first row arrives.
    """
    scan, user = Scan.__table__.c, UserStat.__table__.c
    query = (
        select(
            scan.id,
            scan.run_id,
            scan.kind,
            scan.status,
            scan.task_name,
            scan.hostname,
            scan.target_path,
            scan.started_at,
            scan.files,
            scan.bytes,
            scan.allocated_bytes,
            scan.old_files,
            scan.old_bytes,
            scan.average_age_days,
            scan.disk_use_percent,
            scan.errors,
            user.username.label("u_username"),
            user.uid.label("u_uid"),
            user.files.label("u_files"),
            user.bytes.label("u_bytes"),
            user.allocated_bytes.label("u_allocated_bytes"),
            user.old_files.label("u_old_files"),
            user.old_bytes.label("u_old_bytes"),
            user.average_age_days.label("u_average_age_days"),
        )
        .select_from(Scan.__table__.outerjoin(UserStat.__table__, user.scan_id == scan.id))
        .order_by(scan.started_at, scan.id, user.bytes.desc(), user.username)
        .execution_options(yield_per=_BATCH)
    )
    if since is not None:
        query = query.where(scan.started_at >= since)
    last_scan = None
    for row in session.execute(query):
        common = {
            "run_id": row.run_id,
            "kind": row.kind,
            "status": row.status,
            "task": row.task_name,
            "hostname": row.hostname,
            "target_path": row.target_path,
        }
        if row.id != last_scan:
            last_scan = row.id
            yield {
                **common,
                "username": None,
                "uid": None,
                "scanned_at": iso_utc(row.started_at),
                "files": row.files,
                "bytes": row.bytes,
                "allocated_bytes": row.allocated_bytes,
                "old_files": row.old_files,
                "old_bytes": row.old_bytes,
                "average_age_days": row.average_age_days,
                "disk_use_percent": row.disk_use_percent,
                "errors": row.errors,
            }
        if row.u_username is None:
            continue
        yield {
            **common,
            "username": row.u_username,
            "uid": row.u_uid,
            "scanned_at": iso_utc(row.started_at),
            "files": row.u_files,
            "bytes": row.u_bytes,
            "allocated_bytes": row.u_allocated_bytes,
            "old_files": row.u_old_files,
            "old_bytes": row.u_old_bytes,
            "average_age_days": row.u_average_age_days,
            "disk_use_percent": row.disk_use_percent,
            "errors": row.errors,
        }
