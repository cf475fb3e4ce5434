"""Read-only queries behind ``dkmonitor view``.

Each function returns ViewRecords: the stable record shape of the JSON/CSV
output (DESIGN.md lists the keys), plus the previous scan's byte count so
the table can show growth. Each host/target's newest good full scans are
read backwards from an index on the full scans' keys (a LATERAL join on
PostgreSQL, a correlated id list on SQLite), and user rows are then fetched
by scan id: at a year of hourly history a view's queries take milliseconds
(bench/history.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, Table, select, true
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


# Core tables, not the mapped classes: touching a mapped attribute makes the ORM
# configure every mapper (about 30 ms of CPU per process on the benchmark
# machine), which plain column rows never need.
_scans: Table = Scan.__table__  # type: ignore[assignment]
_users: Table = UserStat.__table__  # type: ignore[assignment]

_SCAN_COLUMNS = (
    _scans.c.id,
    _scans.c.task_name,
    _scans.c.hostname,
    _scans.c.target_path,
    _scans.c.started_at,
    _scans.c.files,
    _scans.c.bytes,
    _scans.c.allocated_bytes,
    _scans.c.old_files,
    _scans.c.old_bytes,
    _scans.c.average_age_days,
    _scans.c.disk_use_percent,
    _scans.c.errors,
)
_USER_COLUMNS = (
    _users.c.scan_id,
    _users.c.username,
    _users.c.uid,
    _users.c.files,
    _users.c.bytes,
    _users.c.allocated_bytes,
    _users.c.old_files,
    _users.c.old_bytes,
    _users.c.average_age_days,
)


class _Ranked(NamedTuple):
    """One full scan's columns as a view needs them, and its rank in its place (1 = newest)."""

    id: int
    task_name: str
    hostname: str
    target_path: str
    started_at: datetime
    files: int | None
    bytes: int | None
    allocated_bytes: int | None
    old_files: int | None
    old_bytes: int | None
    average_age_days: float | None
    disk_use_percent: float | None
    errors: int
    rank: int


def _latest_scans(
    session: Session, hostname: str | None, path: str | None, history: int
) -> list[_Ranked]:
    """The newest ``history`` + 1 good full scans of each host/target (one extra for the change).

    Rows carry the scan's columns and its ``rank`` (1 = newest). The places
    come from ``ix_scans_full_place_started`` alone, then each place's newest
    scans are read backwards from the same index: the cost follows the number
    of places and ``history``, not the length of the stored history (a year
    of hourly quick scans holds 23 quick scans for every full one). Plain
    rows, not ORM objects: building entities cost more than the query.
    """
    good = (_scans.c.kind == "full", _scans.c.status == "ok")
    places = select(_scans.c.hostname, _scans.c.target_path).where(*good).distinct()
    if hostname is not None:
        places = places.where(_scans.c.hostname == hostname)
    if path is not None:
        places = places.where(_scans.c.target_path == path)
    place = places.subquery("place")
    newest = _scans.alias("newest")
    in_place = (
        select(newest.c.id)
        .where(
            newest.c.kind == "full",
            newest.c.status == "ok",
            newest.c.hostname == place.c.hostname,
            newest.c.target_path == place.c.target_path,
        )
        .order_by(newest.c.started_at.desc())
        .limit(history + 1)
    )
    if session.get_bind().dialect.name == "sqlite":  # no LATERAL: a correlated id list
        query = (
            select(*_SCAN_COLUMNS)
            .select_from(place)
            .join(_scans, _scans.c.id.in_(in_place.scalar_subquery()))
        )
    else:
        latest = in_place.with_only_columns(
            *(newest.c[column.key] for column in _SCAN_COLUMNS)
        ).lateral("latest")
        query = select(*latest.c).select_from(place).join(latest, true())
    rows = session.connection().execute(query).all()
    rows.sort(key=lambda row: (row.hostname, row.target_path, row.started_at), reverse=True)
    ranked = []
    rank, last = 0, None
    for row in rows:
        here = (row.hostname, row.target_path)
        rank = rank + 1 if here == last else 1
        last = here
        ranked.append(_Ranked(*row, rank=rank))
    return ranked


def system_records(
    session: Session, hostname: str | None = None, path: str | None = None, history: int = 1
) -> list[ViewRecord]:
    by_place: dict[tuple[str, str], dict[int, _Ranked]] = {}
    for scan in _latest_scans(session, hostname, path, history):
        by_place.setdefault((scan.hostname, scan.target_path), {})[scan.rank] = scan
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


def _user_rows(
    session: Session, columns: tuple[Any, ...], scan_ids: list[int], username: str | None
) -> Sequence[Row[Any]]:
    if not scan_ids:
        return []
    query = select(*columns).where(_users.c.scan_id.in_(scan_ids))
    if username is not None:
        query = query.where(_users.c.username == username)
    # Straight to the connection: plain rows need none of the ORM's result machinery.
    return session.connection().execute(query).all()


def user_records(
    session: Session,
    username: str | None = None,
    hostname: str | None = None,
    history: int = 1,
) -> list[ViewRecord]:
    scans = {scan.id: scan for scan in _latest_scans(session, hostname, None, history)}
    shown = [scan_id for scan_id, scan in scans.items() if scan.rank <= history]
    # The extra, oldest scan only lends its byte counts to the change column.
    extra = [scan_id for scan_id, scan in scans.items() if scan.rank > history]
    stats = _user_rows(session, _USER_COLUMNS, shown, username)
    earlier = _user_rows(
        session, (_users.c.scan_id, _users.c.username, _users.c.bytes), extra, username
    )
    # (host, target, rank) of each scan, for finding a user's row one scan earlier.
    place_rank = {scan_id: (s.hostname, s.target_path, s.rank) for scan_id, s in scans.items()}
    bytes_at: dict[tuple[str, str, int, str], int] = {}
    for scan_id, name, size in earlier:
        bytes_at[(*place_rank[scan_id], name)] = size
    for scan_id, name, _uid, _files, size, *_rest in stats:
        bytes_at[(*place_rank[scan_id], name)] = size
    # Tuple unpacking, not attribute access: this loop runs once per user per place.
    records = []
    for scan_id, name, uid, files, size, allocated, old_files, old_bytes, age in stats:
        scan = scans[scan_id]
        records.append(
            ViewRecord(
                task=scan.task_name,
                hostname=scan.hostname,
                target_path=scan.target_path,
                username=name,
                uid=uid,
                scanned_at=scan.started_at,
                files=files,
                bytes=size,
                allocated_bytes=allocated,
                old_files=old_files,
                old_bytes=old_bytes,
                average_age_days=age,
                disk_use_percent=scan.disk_use_percent,
                errors=scan.errors,
                previous_bytes=bytes_at.get((scan.hostname, scan.target_path, scan.rank + 1, name)),
            )
        )
    # Equal sizes are ordered by name so the output does not depend on the row order.
    records.sort(key=lambda r: r.username or "")
    records.sort(
        key=lambda r: (r.hostname, r.target_path, -r.scanned_at.timestamp(), -(r.bytes or 0))
    )
    return records


def known_usernames(session: Session) -> Iterable[str]:
    return session.scalars(select(_users.c.username).distinct())
