"""Everything the HTML report shows, read from the history database in a few queries.

One module, so the report's reads can be wired to new tables in one place.
It reads through the same plain DB-API connection as ``dkmonitor view``
(``ReadConnection``, ``?`` placeholders), never SQLAlchemy, and asks for
whole columns at once: a year of hourly history for 10 targets (87,600
scans, 1.8 million user rows) is read in well under a second, because user
rows are fetched only for the few scans shown (the newest full scan of each
place and the scans 1, 7 and 30 days before it).

The report's parts: places, disk-use readings over time, thresholds,
per-user rows of the newest full scan (inodes and directories included),
growth per user, and the newest full scan's size/age histograms and top
directories (tables ``scan_histograms`` and ``scan_top_directories``,
migration 0006; see dkmonitor/db/shape.py).

The schema is always at head when the report reads (``app.reader()``
migrates first), but scans stored before migration 0006 hold none of the
newer numbers: their user rows say 0 inodes (the column's default) and they
have no histogram or top-directory rows. Such a scan's page says "not
recorded yet" for those parts instead of showing zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dkmonitor.clock import naive_utc
from dkmonitor.db.readonly import ReadConnection
from dkmonitor.scan.stats import AGE_EDGES_DAYS, AGE_LABELS, SIZE_EDGES, SIZE_LABELS

GROWTH_DAYS = (1, 7, 30)
# A comparison scan may start this much later than "N days before" (a nightly
# scan that started a few minutes later than the day before still counts) ...
_LATE = timedelta(hours=6)
# ... and no earlier than N days + this (a scan much older is no "N days ago").
_EARLY = {1: timedelta(days=1), 7: timedelta(days=3), 30: timedelta(days=7)}
# Scan ids per statement: under SQLite's oldest limit on bound parameters (999).
_IDS_PER_STATEMENT = 500


@dataclass(frozen=True)
class UserRow:
    """One owner in the newest full scan of a place."""

    username: str
    uid: int
    files: int
    bytes: int
    allocated_bytes: int
    old_files: int
    old_bytes: int
    average_age_days: float
    inodes: int | None = None  # None: not recorded (hand-built data; see PlaceData.has_inodes)
    directories: int | None = None


@dataclass(frozen=True)
class Growth:
    """Per-user change in bytes between the newest full scan and one ``days`` before."""

    days: int
    since: datetime | None  # the older scan compared with; None: there is none
    changes: tuple[tuple[str, int, int], ...] = ()  # (user, bytes now, change), largest first


@dataclass(frozen=True)
class Bucket:
    label: str
    files: int
    bytes: int


@dataclass(frozen=True)
class Histogram:
    """Files and bytes per bucket (sizes, or ages), as the scan recorded them."""

    title: str  # "File sizes", "File ages"
    buckets: tuple[Bucket, ...]


@dataclass(frozen=True)
class TopDirectory:
    """A directory's whole subtree (files deeper count in it), as the scan recorded it."""

    path: str
    bytes: int
    old_bytes: int
    files: int | None = None


@dataclass
class PlaceData:
    """One host and target: what its report page shows."""

    hostname: str
    target_path: str
    task_name: str
    warning: float | None = None  # the task's thresholds; None when the task is gone
    critical: float | None = None
    times: list[datetime] = field(default_factory=list)  # disk-use readings, oldest first
    percents: list[float] = field(default_factory=list)
    scan_id: int | None = None  # the newest good full scan, if any
    scanned_at: datetime | None = None
    disk_total: int | None = None
    errors: int = 0
    users: list[UserRow] = field(default_factory=list)  # largest first
    growth: list[Growth] = field(default_factory=list)
    has_inodes: bool = False  # the user rows carry inodes and directories (scan after 0006)
    histograms: list[Histogram] | None = None  # None: not recorded (scan before 0006)
    top_by_bytes: list[TopDirectory] | None = None  # None: not recorded (scan before 0006)
    top_by_old_bytes: list[TopDirectory] | None = None


@dataclass
class ReportData:
    places: list[PlaceData]
    since: datetime | None  # readings older than this were not read


def _datetime(value: datetime | str) -> datetime:
    """A stored time as naive UTC: psycopg2 gives datetimes, SQLite the text SQLAlchemy wrote.

    An aware value (a ``timestamp with time zone`` column) is turned into naive
    UTC too, so the report's arithmetic never mixes the two kinds.
    """
    return naive_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))


def load(reader: ReadConnection, history_days: int | None = 365) -> ReportData:
    """The whole report's data; disk-use readings of the last ``history_days`` (None: all)."""
    since = None
    places: dict[tuple[str, str], PlaceData] = {}
    newest = reader.rows("SELECT max(started_at) FROM scans WHERE status = 'ok'")
    if newest and newest[0][0] is not None and history_days is not None:
        since = _datetime(newest[0][0]) - timedelta(days=history_days)
    _read_readings(reader, places, since)
    full = _read_full_scans(reader)
    _apply_tasks(reader, places)
    latest: dict[int, PlaceData] = {}
    compared: dict[int, list[tuple[int, datetime]]] = {}  # newest scan id -> (days, scan)
    for key, scans in full.items():
        place = places.get(key)
        if place is None:  # full scans older than the readings window: not shown
            continue
        scan_id, started, task, disk_total, errors = scans[-1]
        place.scan_id, place.scanned_at, place.task_name = scan_id, started, task
        place.disk_total, place.errors = disk_total, errors
        latest[scan_id] = place
        compared[scan_id] = _comparison_scans(scans)
    _read_users(reader, latest)
    _read_growth(reader, latest, compared)
    ids = list(latest)
    histograms = read_histograms(reader, ids)
    by_bytes, by_old = read_top_directories(reader, ids)
    for scan_id, place in latest.items():
        place.histograms = histograms.get(scan_id)
        if place.histograms is not None:  # recorded: a scan of an empty tree has no directories
            place.top_by_bytes = by_bytes.get(scan_id, [])
            place.top_by_old_bytes = by_old.get(scan_id, [])
    return ReportData(sorted(places.values(), key=lambda p: (p.hostname, p.target_path)), since)


def _read_readings(
    reader: ReadConnection, places: dict[tuple[str, str], PlaceData], since: datetime | None
) -> None:
    """Disk use over time: every good scan, quick or full, with a disk reading."""
    sql = (
        "SELECT hostname, target_path, task_name, started_at, disk_use_percent FROM scans "
        "WHERE status = 'ok' AND disk_use_percent IS NOT NULL"
    )
    params: list[object] = []
    if since is not None:
        sql += " AND started_at >= ?"
        params.append(reader.time_param(since))
    rows = [(h, p, t, _datetime(s), pct) for h, p, t, s, pct in reader.rows(sql, params)]
    rows.sort(key=lambda row: row[3])
    for hostname, path, task, started, percent in rows:
        place = places.get((hostname, path))
        if place is None:
            place = places[(hostname, path)] = PlaceData(hostname, path, task)
        place.task_name = task  # the newest reading's task names the place
        place.times.append(started)
        place.percents.append(float(percent))


def _read_full_scans(
    reader: ReadConnection,
) -> dict[tuple[str, str], list[tuple[int, datetime, str, int | None, int]]]:
    """Good full scans per place, oldest first: (id, started, task, disk_total, errors)."""
    rows = reader.rows(
        "SELECT id, hostname, target_path, started_at, task_name, disk_total, errors "
        "FROM scans WHERE kind = 'full' AND status = 'ok'"
    )
    full: dict[tuple[str, str], list[tuple[int, datetime, str, int | None, int]]] = {}
    for scan_id, hostname, path, started, task, disk_total, errors in rows:
        full.setdefault((hostname, path), []).append(
            (scan_id, _datetime(started), task, disk_total, errors or 0)
        )
    for scans in full.values():
        scans.sort(key=lambda scan: scan[1])
    return full


def _comparison_scans(
    scans: Sequence[tuple[int, datetime, str, int | None, int]],
) -> list[tuple[int, datetime]]:
    """For each of GROWTH_DAYS: the scan about that many days before the newest, if any.

    The newest scan started at or before "newest - N days" (give or take
    ``_LATE``), and not much earlier than that (``_EARLY``); the page names
    its date, so "7 days" is never silently a month.
    """
    newest = scans[-1][1]
    found: list[tuple[int, datetime]] = []
    for days in GROWTH_DAYS:
        latest_ok = newest - timedelta(days=days) + _LATE
        earliest_ok = newest - timedelta(days=days) - _EARLY[days]
        pick = None
        for scan_id, started, *_rest in reversed(scans[:-1]):
            if started <= latest_ok:
                if started >= earliest_ok:
                    pick = (days, scan_id, started)
                break
        found.append((pick[1], pick[2]) if pick else (-1, newest))
    return found


def _apply_tasks(reader: ReadConnection, places: dict[tuple[str, str], PlaceData]) -> None:
    """Thresholds from the task of each place (by its host and target)."""
    rows = reader.rows(
        "SELECT name, hostname, target_path, usage_warning_threshold, usage_critical_threshold "
        "FROM tasks"
    )
    by_place = {(host, path): (name, warn, crit) for name, host, path, warn, crit in rows}
    by_name = {name: (name, warn, crit) for name, _host, _path, warn, crit in rows}
    for key, place in places.items():
        task = by_name.get(place.task_name) or by_place.get(key)
        if task is not None:
            place.warning, place.critical = float(task[1]), float(task[2])


def _by_scan(
    reader: ReadConnection,
    columns: Sequence[str],
    scan_ids: Sequence[int],
    table: str = "user_stats",
) -> list[tuple[Any, ...]]:
    """Rows of ``table`` (``columns``, scan_id first) of these scans."""
    rows: list[tuple[Any, ...]] = []
    select = f"SELECT scan_id, {', '.join(columns)} FROM {table} WHERE scan_id IN "
    for start in range(0, len(scan_ids), _IDS_PER_STATEMENT):
        chunk = list(scan_ids[start : start + _IDS_PER_STATEMENT])
        rows.extend(reader.rows(select + "(" + ", ".join(["?"] * len(chunk)) + ")", chunk))
    return rows


_USER_COLUMNS = (
    "username",
    "uid",
    "files",
    "bytes",
    "allocated_bytes",
    "old_files",
    "old_bytes",
    "average_age_days",
    "inodes",
    "directories",
)


def _read_users(reader: ReadConnection, latest: dict[int, PlaceData]) -> None:
    """Each newest full scan's user rows, largest first.

    Every regular file is an inode of its owner, so an owner with files and
    0 inodes is a row stored before the scanner counted inodes (the column's
    default, migration 0006): such a scan's inodes and directories are not
    recorded, not zero.
    """
    for scan_id, *values in _by_scan(reader, _USER_COLUMNS, list(latest)):
        latest[scan_id].users.append(UserRow(*values))
    for place in latest.values():
        place.has_inodes = not any(user.files and not user.inodes for user in place.users)
        place.users.sort(key=lambda user: (-user.bytes, user.username))


def _read_growth(
    reader: ReadConnection,
    latest: dict[int, PlaceData],
    compared: dict[int, list[tuple[int, datetime]]],
) -> None:
    """Each place's top growers over GROWTH_DAYS: bytes now minus bytes then, per user.

    A user absent from the older scan had nothing there: all their bytes are growth.
    """
    older_ids = sorted({scan_id for pairs in compared.values() for scan_id, _ in pairs} - {-1})
    then: dict[int, dict[str, int]] = {}
    for scan_id, name, size in _by_scan(reader, ("username", "bytes"), older_ids):
        then.setdefault(scan_id, {})[name] = size
    for newest_id, place in latest.items():
        for days, (older_id, started) in zip(GROWTH_DAYS, compared[newest_id], strict=True):
            if older_id == -1:
                place.growth.append(Growth(days, None))
                continue
            before = then.get(older_id, {})
            changes = [
                (u.username, u.bytes, u.bytes - before.get(u.username, 0)) for u in place.users
            ]
            changes.sort(key=lambda change: (-change[2], change[0]))
            place.growth.append(Growth(days, started, tuple(changes)))


# ------------------------------------------------- histograms and top directories
# Migration 0006: scan_histograms (kind size|age, lower_bound, files, bytes)
# and scan_top_directories (ranking bytes|old_bytes, rank, path, files,
# bytes, old_bytes), written by every full run (dkmonitor/runrecord.py);
# dkmonitor/db/shape.py reads one scan's rows, these read all the shown scans'
# at once. A scan without rows there was stored before 0006.

_HISTOGRAMS = (  # kind -> title, the buckets' lower edges (after 0) and their labels
    ("size", "File sizes", SIZE_EDGES, SIZE_LABELS),
    ("age", "File ages", AGE_EDGES_DAYS, AGE_LABELS),
)


def bucket_label(kind: str, lower_bound: int) -> str:
    """The scanner's label of the bucket starting at ``lower_bound`` (dkmonitor/scan/stats.py).

    Each bucket holds the values from its lower edge up to the next edge;
    ``SIZE_LABELS``/``AGE_LABELS`` name them by that upper edge ("<64K"),
    the last one by its lower edge (">=64G"). A lower bound the scanner's
    edges do not know (buckets changed since the scan) is spelt out.
    """
    for name, _title, edges, labels in _HISTOGRAMS:
        if name != kind:
            continue
        if lower_bound == 0:
            return labels[0]
        if lower_bound in edges:
            return labels[edges.index(lower_bound) + 1]
    unit = "d" if kind == "age" else " B"
    return f">={lower_bound:,}{unit}"


def read_histograms(reader: ReadConnection, scan_ids: Sequence[int]) -> dict[int, list[Histogram]]:
    """Size and age histograms per full scan id; scans without any are left out."""
    found: dict[int, dict[str, list[tuple[int, int, int]]]] = {}
    columns = ("kind", "lower_bound", "files", "bytes")
    for scan_id, kind, lower, files, size in _by_scan(reader, columns, scan_ids, "scan_histograms"):
        found.setdefault(scan_id, {}).setdefault(kind, []).append(
            (int(lower), int(files), int(size))
        )
    result: dict[int, list[Histogram]] = {}
    for scan_id, kinds in found.items():
        histograms = []
        for kind, title, _edges, _labels in _HISTOGRAMS:
            buckets = sorted(kinds.get(kind, []))
            if buckets:
                histograms.append(
                    Histogram(
                        title,
                        tuple(Bucket(bucket_label(kind, low), f, b) for low, f, b in buckets),
                    )
                )
        result[scan_id] = histograms
    return result


def read_top_directories(
    reader: ReadConnection, scan_ids: Sequence[int]
) -> tuple[dict[int, list[TopDirectory]], dict[int, list[TopDirectory]]]:
    """Top directories by bytes and by old bytes per full scan id, rank 1 first."""
    ranked: dict[str, dict[int, list[tuple[int, TopDirectory]]]] = {
        "bytes": {},
        "old_bytes": {},
    }
    columns = ("ranking", "rank", "path", "files", "bytes", "old_bytes")
    for scan_id, ranking, rank, path, files, size, old in _by_scan(
        reader, columns, scan_ids, "scan_top_directories"
    ):
        if ranking in ranked:
            ranked[ranking].setdefault(scan_id, []).append(
                (int(rank), TopDirectory(path, int(size), int(old), int(files)))
            )
    by_bytes, by_old = (
        {
            scan_id: [top for _rank, top in sorted(rows, key=lambda r: r[0])]
            for scan_id, rows in ranked[ranking].items()
        }
        for ranking in ("bytes", "old_bytes")
    )
    return by_bytes, by_old
