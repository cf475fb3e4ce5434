"""Everything the HTML report shows, read from the history database in a few queries.

One module, so the report's reads can be wired to new tables in one place.
It reads through the same plain DB-API connection as ``dkmonitor view``
(``ReadConnection``, ``?`` placeholders), never SQLAlchemy, and asks for
whole columns at once: a year of hourly history for 10 targets (87,600
scans, 1.8 million user rows) is read in well under a second, because user
rows are fetched only for the few scans shown (the newest full scan of each
place and the scans 1, 7 and 30 days before it).

The report's parts:
- core, from the schema as it is today: places, disk-use readings over time,
  thresholds, per-user rows of the newest full scan, growth per user;
- OPTIONAL, each behind its own probe and rendered as "not recorded yet"
  when absent: per-user ``inodes``/``directories`` columns (probed by
  column name), and the per-target histograms and top directories
  (``optional_histograms`` and ``optional_top_directories`` below: the
  migration that adds those tables wires its reads in there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dkmonitor.db.readonly import ReadConnection

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
    inodes: int | None = None  # OPTIONAL: None until the schema records it
    directories: int | None = None  # OPTIONAL


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
    path: str
    bytes: int
    old_bytes: int


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
    has_inodes: bool = False  # the user rows carry inodes and directories
    histograms: list[Histogram] | None = None  # None: not recorded yet
    top_by_bytes: list[TopDirectory] | None = None  # None: not recorded yet
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
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


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
    columns = user_columns(reader)
    _read_users(reader, latest, columns)
    _read_growth(reader, latest, compared)
    ids = list(latest)
    histograms = optional_histograms(reader, ids)
    by_bytes, by_old = optional_top_directories(reader, ids)
    for scan_id, place in latest.items():
        place.histograms = histograms.get(scan_id)
        place.top_by_bytes = by_bytes.get(scan_id)
        place.top_by_old_bytes = by_old.get(scan_id)
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
        params.append(since if reader.backend == "postgresql" else str(since))
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


def user_columns(reader: ReadConnection) -> set[str]:
    """The columns of ``user_stats``: the OPTIONAL ones are used when they exist."""
    if reader.backend == "sqlite":
        return {row[1] for row in reader.rows("PRAGMA table_info(user_stats)")}
    return {
        row[0]
        for row in reader.rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'user_stats' AND table_schema = current_schema()"
        )
    }


def _by_scan(
    reader: ReadConnection, columns: Sequence[str], scan_ids: Sequence[int]
) -> list[tuple[Any, ...]]:
    """user_stats rows (``columns``, scan_id first) of these scans."""
    rows: list[tuple[Any, ...]] = []
    select = f"SELECT scan_id, {', '.join(columns)} FROM user_stats WHERE scan_id IN "
    for start in range(0, len(scan_ids), _IDS_PER_STATEMENT):
        chunk = list(scan_ids[start : start + _IDS_PER_STATEMENT])
        rows.extend(reader.rows(select + "(" + ", ".join(["?"] * len(chunk)) + ")", chunk))
    return rows


_CORE = ("username", "uid", "files", "bytes", "allocated_bytes", "old_files", "old_bytes")
_OPTIONAL_USER = ("inodes", "directories")


def _read_users(reader: ReadConnection, latest: dict[int, PlaceData], columns: set[str]) -> None:
    has_optional = all(name in columns for name in _OPTIONAL_USER)
    wanted = [*_CORE, "average_age_days", *(_OPTIONAL_USER if has_optional else ())]
    for scan_id, *values in _by_scan(reader, wanted, list(latest)):
        latest[scan_id].users.append(UserRow(*values))
    for place in latest.values():
        place.has_inodes = has_optional
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


# ---------------------------------------------------------------- OPTIONAL parts
# The size/age histograms and the top directories come with a later migration
# (0006). Until it is merged these return nothing and the pages say "not
# recorded yet". To wire them in: read the new tables for ``scan_ids`` here,
# build the dataclasses above, and key them by scan id; nothing else changes.


def optional_histograms(
    reader: ReadConnection, scan_ids: Sequence[int]
) -> dict[int, list[Histogram]]:
    """Size and age histograms per full scan id (none recorded by this schema yet)."""
    del reader, scan_ids
    return {}


def optional_top_directories(
    reader: ReadConnection, scan_ids: Sequence[int]
) -> tuple[dict[int, list[TopDirectory]], dict[int, list[TopDirectory]]]:
    """Top directories by bytes and by old bytes per full scan id (none recorded yet)."""
    del reader, scan_ids
    return {}, {}
