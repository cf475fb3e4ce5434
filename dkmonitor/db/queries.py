"""Read-only queries behind ``dkmonitor view``.

Each function returns ViewRecords: the stable record shape of the JSON/CSV
output (DESIGN.md lists the keys), plus the previous scan's byte count so
the table can show growth. Each host/target's newest good full scans are
read backwards from an index on the full scans' keys (a LATERAL join on
PostgreSQL, a correlated id list on SQLite), and user rows are then fetched
by scan id: at a year of hourly history a view's queries take milliseconds
(bench/history.py measures it).

The SQL is plain text run on a DB-API connection (``ReadConnection``), not
SQLAlchemy: importing SQLAlchemy cost a view process more than its queries
and its output together. Only the columns' Python types need care: SQLite
hands back the ``DateTime`` columns as the text SQLAlchemy stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dkmonitor.clock import parse_time
from dkmonitor.db.readonly import ReadConnection
from dkmonitor.metrics import NAMES, VIEW_KEYS, Totals
from dkmonitor.units import iso_utc

# The keys of `view --format json|csv` (DESIGN.md), from the metrics' declaration.
JSON_KEYS = VIEW_KEYS


@dataclass(frozen=True)
class ViewRecord(Totals):
    """One row of a view: a place and time, the metrics (``Totals``), the disk's state."""

    task: str
    hostname: str
    target_path: str
    username: str | None  # None: the whole target
    uid: int | None
    scanned_at: datetime
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
        data["scanned_at"] = iso_utc(self.scanned_at)
        return data


# A scan row as the views read it: these columns, then the metrics (NAMES).
_SCAN_HEAD = (
    "id",
    "task_name",
    "hostname",
    "target_path",
    "started_at",
    "disk_use_percent",
    "errors",
)
_SCAN_COLUMNS = (*_SCAN_HEAD, *NAMES)
_USER_COLUMNS = ("scan_id", "username", "uid", *NAMES)
_GOOD_FULL = "{t}.kind = 'full' AND {t}.status = 'ok'"

# Scan ids per statement: under SQLite's oldest limit on bound parameters (999).
_IDS_PER_STATEMENT = 500


@dataclass(frozen=True)
class RankedScan:
    """One good full scan's columns as a view needs them, and its rank in its place (1 = newest).

    ``metrics`` holds the whole target's value of each metric (``metrics.NAMES``).
    """

    id: int
    task_name: str
    hostname: str
    target_path: str
    started_at: datetime
    disk_use_percent: float | None
    errors: int
    metrics: dict[str, Any]  # NAMES -> the whole target's value
    rank: int


def _latest_scans_sql(
    backend: str, hostname: str | None, path: str | None
) -> tuple[str, list[object]]:
    """The statement of ``_latest_scans`` for ``backend``, and its parameters but the limit."""
    filters = ""
    params: list[object] = []
    if hostname is not None:
        filters += " AND hostname = ?"
        params.append(hostname)
    if path is not None:
        filters += " AND target_path = ?"
        params.append(path)
    place = (
        f"(SELECT DISTINCT hostname, target_path FROM scans "
        f"WHERE {_GOOD_FULL.format(t='scans')}{filters}) AS place"
    )
    newest = (
        f"FROM scans AS newest WHERE {_GOOD_FULL.format(t='newest')} "
        "AND newest.hostname = place.hostname AND newest.target_path = place.target_path "
        "ORDER BY newest.started_at DESC LIMIT ?"
    )
    if backend == "sqlite":  # no LATERAL: a correlated id list
        columns = ", ".join(f"scans.{c}" for c in _SCAN_COLUMNS)
        sql = f"SELECT {columns} FROM {place} JOIN scans ON scans.id IN (SELECT newest.id {newest})"
    else:
        columns = ", ".join(f"newest.{c}" for c in _SCAN_COLUMNS)
        sql = (
            f"SELECT latest.* FROM {place} "
            f"JOIN LATERAL (SELECT {columns} {newest}) AS latest ON true"
        )
    return sql, params


def _latest_scans(
    reader: ReadConnection, hostname: str | None, path: str | None, history: int
) -> list[RankedScan]:
    """The newest ``history`` + 1 good full scans of each host/target (one extra for the change).

    Rows carry the scan's columns and its ``rank`` (1 = newest). The places
    come from ``ix_scans_full_place_started`` alone, then each place's newest
    scans are read backwards from the same index: the cost follows the number
    of places and ``history``, not the length of the stored history (a year
    of hourly quick scans holds 23 quick scans for every full one).
    """
    sql, params = _latest_scans_sql(reader.backend, hostname, path)
    head = len(_SCAN_HEAD)
    rows = [
        RankedScan(
            id=row[0],
            task_name=row[1],
            hostname=row[2],
            target_path=row[3],
            started_at=parse_time(row[4]),
            disk_use_percent=row[5],
            errors=row[6],
            metrics=dict(zip(NAMES, row[head:], strict=True)),
            rank=0,
        )
        for row in reader.rows(sql, [*params, history + 1])
    ]
    rows.sort(key=lambda row: (row.hostname, row.target_path, row.started_at), reverse=True)
    ranked = []
    rank, last = 0, None
    for row in rows:
        here = (row.hostname, row.target_path)
        rank = rank + 1 if here == last else 1
        last = here
        ranked.append(replace(row, rank=rank))
    return ranked


def system_records(
    reader: ReadConnection, hostname: str | None = None, path: str | None = None, history: int = 1
) -> list[ViewRecord]:
    by_place: dict[tuple[str, str], dict[int, RankedScan]] = {}
    for scan in _latest_scans(reader, hostname, path, history):
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
                    disk_use_percent=scan.disk_use_percent,
                    errors=scan.errors,
                    previous_bytes=previous.metrics["bytes"] if previous is not None else None,
                    **scan.metrics,
                )
            )
    return records


def latest_full_scans(
    reader: ReadConnection, hostname: str | None = None, path: str | None = None
) -> list[RankedScan]:
    """The newest good full scan of each host/target (of ``hostname``, ``path`` if given)."""
    return [scan for scan in _latest_scans(reader, hostname, path, 0) if scan.rank == 1]


def user_columns(
    reader: ReadConnection,
    columns: Sequence[str],
    scan_ids: list[int],
    username: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """(scan_id, username, *columns) of the user_stats rows of these scans."""
    return _user_rows(reader, ("scan_id", "username", *columns), scan_ids, username)


def _user_rows(
    reader: ReadConnection, columns: Sequence[str], scan_ids: list[int], username: str | None
) -> Iterator[tuple[Any, ...]]:
    """user_stats rows of these scans (of one user when ``username`` is given)."""
    select = f"SELECT {', '.join(columns)} FROM user_stats WHERE scan_id IN "
    for start in range(0, len(scan_ids), _IDS_PER_STATEMENT):
        chunk = scan_ids[start : start + _IDS_PER_STATEMENT]
        sql = select + "(" + ", ".join(["?"] * len(chunk)) + ")"
        params: list[object] = list(chunk)
        if username is not None:
            sql += " AND username = ?"
            params.append(username)
        yield from reader.rows(sql, params)


def user_records(
    reader: ReadConnection,
    username: str | None = None,
    hostname: str | None = None,
    history: int = 1,
) -> list[ViewRecord]:
    scans = {scan.id: scan for scan in _latest_scans(reader, hostname, None, history)}
    shown = [scan_id for scan_id, scan in scans.items() if scan.rank <= history]
    # The extra, oldest scan only lends its byte counts to the change column.
    extra = [scan_id for scan_id, scan in scans.items() if scan.rank > history]
    stats = list(_user_rows(reader, _USER_COLUMNS, shown, username))
    earlier = _user_rows(reader, ("scan_id", "username", "bytes"), extra, username)
    # (host, target, rank) of each scan, for finding a user's row one scan earlier.
    place_rank = {scan_id: (s.hostname, s.target_path, s.rank) for scan_id, s in scans.items()}
    bytes_at: dict[tuple[str, str, int, str], int] = {}
    for scan_id, name, size in earlier:
        bytes_at[(*place_rank[scan_id], name)] = size
    size_at = 3 + NAMES.index("bytes")
    for row in stats:
        bytes_at[(*place_rank[row[0]], row[1])] = row[size_at]
    records = []
    for scan_id, name, uid, *values in stats:
        scan = scans[scan_id]
        records.append(
            ViewRecord(
                task=scan.task_name,
                hostname=scan.hostname,
                target_path=scan.target_path,
                username=name,
                uid=uid,
                scanned_at=scan.started_at,
                disk_use_percent=scan.disk_use_percent,
                errors=scan.errors,
                previous_bytes=bytes_at.get((scan.hostname, scan.target_path, scan.rank + 1, name)),
                **dict(zip(NAMES, values, strict=True)),
            )
        )
    # Equal sizes are ordered by name so the output does not depend on the row order.
    records.sort(key=lambda r: r.username or "")
    records.sort(
        key=lambda r: (r.hostname, r.target_path, -r.scanned_at.timestamp(), -(r.bytes or 0))
    )
    return records
