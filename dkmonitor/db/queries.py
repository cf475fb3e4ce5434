"""Read-only queries behind ``dkmonitor view``.

Each function returns ViewRecords: the stable record shape of the JSON/CSV
output (DESIGN.md lists the keys), plus the previous scan's byte count so
the table can show growth. Scans are ranked per (host, target) with a window
function, so "the latest N scans" costs one indexed pass over the scans
table however long the history is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dkmonitor.db.models import Scan, UserStat

JSON_KEYS = (
    "task",
    "hostname",
    "target_path",
    "username",
    "uid",
    "scanned_at",
    "files",
    "bytes",
    "allocated_bytes",
    "old_files",
    "old_bytes",
    "average_age_days",
    "disk_use_percent",
    "errors",
)


@dataclass(frozen=True)
class ViewRecord:
    task: str
    hostname: str
    target_path: str
    username: str | None  # None: the whole target
    uid: int | None
    scanned_at: datetime
    files: int | None
    bytes: int | None
    allocated_bytes: int | None
    old_files: int | None
    old_bytes: int | None
    average_age_days: float | None
    disk_use_percent: float | None
    errors: int
    previous_bytes: int | None = None  # same host/target/user, one scan earlier

    @property
    def change_bytes(self) -> int | None:
        if self.previous_bytes is None or self.bytes is None:
            return None
        return self.bytes - self.previous_bytes

    def as_json(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in JSON_KEYS}
        data["scanned_at"] = self.scanned_at.isoformat(timespec="seconds") + "Z"
        return data


def _ranked_scans(hostname: str | None, path: str | None) -> Select[Any]:
    rank = (
        func.row_number()
        .over(partition_by=(Scan.hostname, Scan.target_path), order_by=Scan.started_at.desc())
        .label("rank")
    )
    query = select(Scan, rank).where(Scan.kind == "full", Scan.status == "ok")
    if hostname is not None:
        query = query.where(Scan.hostname == hostname)
    if path is not None:
        query = query.where(Scan.target_path == path)
    return query


def _latest_scans(
    session: Session, hostname: str | None, path: str | None, history: int
) -> list[tuple[Scan, int]]:
    """The newest ``history`` + 1 full scans of each host/target (one extra for the change)."""
    ranked = _ranked_scans(hostname, path).subquery()
    scan_alias = ranked.c
    rows = session.execute(
        select(
            *[scan_alias[column.key] for column in Scan.__table__.columns], scan_alias.rank
        ).where(scan_alias.rank <= history + 1)
    ).all()
    return [(row, row.rank) for row in rows]


def system_records(
    session: Session, hostname: str | None = None, path: str | None = None, history: int = 1
) -> list[ViewRecord]:
    scans = _latest_scans(session, hostname, path, history)
    by_place: dict[tuple[str, str], dict[int, Any]] = {}
    for scan, rank in scans:
        by_place.setdefault((scan.hostname, scan.target_path), {})[rank] = scan
    records = []
    for (_host, _path), ranks in sorted(by_place.items()):
        for rank in sorted(ranks):
            if rank > history:
                continue
            scan = ranks[rank]
            previous = ranks.get(rank + 1)
            records.append(
                ViewRecord(
                    task=scan.task_name,
                    hostname=scan.hostname,
                    target_path=scan.target_path,
                    username=None,
                    uid=None,
                    scanned_at=scan.started_at,
                    files=scan.files,
                    bytes=scan.bytes,
                    allocated_bytes=scan.allocated_bytes,
                    old_files=scan.old_files,
                    old_bytes=scan.old_bytes,
                    average_age_days=scan.average_age_days,
                    disk_use_percent=scan.disk_use_percent,
                    errors=scan.errors,
                    previous_bytes=previous.bytes if previous is not None else None,
                )
            )
    return records


def user_records(
    session: Session,
    username: str | None = None,
    hostname: str | None = None,
    history: int = 1,
) -> list[ViewRecord]:
    scans = {
        scan.id: (scan, rank) for scan, rank in _latest_scans(session, hostname, None, history)
    }
    if not scans:
        return []
    query = select(UserStat).where(UserStat.scan_id.in_(list(scans)))
    if username is not None:
        query = query.where(UserStat.username == username)
    stats = session.scalars(query).all()
    bytes_at: dict[tuple[str, str, str, int], int] = {}
    for stat in stats:
        scan, rank = scans[stat.scan_id]
        bytes_at[(scan.hostname, scan.target_path, stat.username, rank)] = stat.bytes
    records = []
    for stat in stats:
        scan, rank = scans[stat.scan_id]
        if rank > history:
            continue
        records.append(
            ViewRecord(
                task=scan.task_name,
                hostname=scan.hostname,
                target_path=scan.target_path,
                username=stat.username,
                uid=stat.uid,
                scanned_at=scan.started_at,
                files=stat.files,
                bytes=stat.bytes,
                allocated_bytes=stat.allocated_bytes,
                old_files=stat.old_files,
                old_bytes=stat.old_bytes,
                average_age_days=stat.average_age_days,
                disk_use_percent=scan.disk_use_percent,
                errors=scan.errors,
                previous_bytes=bytes_at.get(
                    (scan.hostname, scan.target_path, stat.username, rank + 1)
                ),
            )
        )
    records.sort(
        key=lambda r: (r.hostname, r.target_path, -r.scanned_at.timestamp(), -(r.bytes or 0))
    )
    return records


def known_usernames(session: Session) -> Iterable[str]:
    return session.scalars(select(UserStat.username).distinct())
