"""The history queries behind `dkmonitor view`, checked against a brute-force answer.

A small history (three places, a week of nightly full scans between hourly
quick ones, a failed full scan newer than the last good one, users who come
and go, two users with equal sizes) is stored through ``store_scan`` as a run
would store it. The expected records are then worked out in plain Python
from the same data and compared with what the queries return, on SQLite and
on PostgreSQL, for each filter and several ``--history`` depths, and through
both connections a view may read from: the driver's own (the fast path) and
the engine's (after a migration).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import inspect

from dkmonitor.db.engine import Database
from dkmonitor.db.migrate import _shipped_head, head_revision
from dkmonitor.db.queries import JSON_KEYS, ViewRecord, system_records, user_records
from dkmonitor.db.readonly import ReadConnection, connect_current
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.taskrun import UserUsageRow

PLACES = [("alpha", "/scratch"), ("alpha", "/home"), ("beta", "/scratch")]
DAYS = 6
START = datetime(2024, 3, 1)


@dataclass(frozen=True)
class Stored:
    """One stored scan as the test knows it."""

    record: ScanRecord

    @property
    def good_full(self) -> bool:
        return self.record.kind == "full" and self.record.status == "ok"


def _users(place: int, day: int) -> tuple[UserUsageRow, ...]:
    names = ["ann", "bob", "cat"]
    if day == 0:
        names.append("dan")  # only in the oldest scans
    if place == 2 and day == DAYS - 2:
        names.remove("bob")  # missing from beta's second-newest scan: no change to show
    rows = []
    for u, name in enumerate(names):
        size = 1_000_000 * (place + 1) + 10_000 * day + 100 * u
        if name == "cat" and day == DAYS - 1:
            size = 1_000_000 * (place + 1) + 10_000 * day  # the same size as ann's
        rows.append(
            UserUsageRow(
                uid=1000 + u,
                username=name,
                files=size // 1000,
                bytes=size,
                allocated_bytes=size + 4096,
                old_files=day,
                old_bytes=size // 2,
                average_age_days=10.0 + day,
                inodes=size // 500,
                directories=1 + u + day,
            )
        )
    return tuple(rows)


def _history() -> list[Stored]:
    stored = []
    for day in range(DAYS):
        for p, (host, path) in enumerate(PLACES):
            for hour in (0, 2, 5, 13):
                started = START + timedelta(days=day, hours=hour, minutes=p)
                full = hour == 2
                users = _users(p, day) if full else ()
                stored.append(
                    Stored(
                        ScanRecord(
                            run_id=f"run-{day}-{p}-{hour}",
                            task_name=f"task-{host}{path.replace('/', '-')}",
                            hostname=host,
                            target_path=path,
                            kind="full" if full else "quick",
                            status="ok",
                            started_at=started,
                            finished_at=started + timedelta(minutes=5),
                            disk_use_percent=40.0 + day + p,
                            files=sum(u.files for u in users) if full else None,
                            bytes=sum(u.bytes for u in users) if full else None,
                            allocated_bytes=sum(u.allocated_bytes for u in users) if full else None,
                            old_files=sum(u.old_files for u in users) if full else None,
                            old_bytes=sum(u.old_bytes for u in users) if full else None,
                            average_age_days=12.5 if full else None,
                            inodes=sum(u.inodes for u in users) if full else None,
                            directories=7 if full else None,
                            errors=p,
                            users=users,
                        )
                    )
                )
    # A failed full scan, newer than any good one, must not hide the last good scan.
    failed = replace(
        stored[-1].record,
        run_id="run-failed",
        kind="full",
        status="failed",
        started_at=START + timedelta(days=DAYS, hours=1),
        bytes=1,
        users=(),
    )
    stored.append(Stored(failed))
    return stored


HISTORY = _history()


@pytest.fixture
def history_db(database: Database) -> Database:
    with database.session() as session:
        for stored in HISTORY:
            store_scan(session, stored.record)
    return database


@pytest.fixture(params=["direct", "engine"])
def reader(request, history_db: Database) -> Iterator[ReadConnection]:
    """The stored history, read straight from the driver or through the engine."""
    if request.param == "direct":
        connection = connect_current(history_db.engine.url.render_as_string(hide_password=False))
        assert connection is not None, "a migrated database takes the direct path"
    else:
        connection = history_db.reader()
    with connection:
        yield connection


def _good_full_newest_first(host: str, path: str) -> list[ScanRecord]:
    scans = [
        s.record
        for s in HISTORY
        if s.good_full and (s.record.hostname, s.record.target_path) == (host, path)
    ]
    return sorted(scans, key=lambda r: r.started_at, reverse=True)


def _expected_systems(host: str | None, path: str | None, history: int) -> list[ViewRecord]:
    records = []
    for place_host, place_path in sorted(PLACES):
        if host not in (None, place_host) or path not in (None, place_path):
            continue
        scans = _good_full_newest_first(place_host, place_path)
        for i, scan in enumerate(scans[:history]):
            previous = scans[i + 1] if i + 1 < len(scans) else None
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
                    inodes=scan.inodes,
                    directories=scan.directories,
                    disk_use_percent=scan.disk_use_percent,
                    errors=scan.errors,
                    previous_bytes=previous.bytes if previous else None,
                )
            )
    return records


def _expected_users(name: str | None, host: str | None, history: int) -> list[ViewRecord]:
    records = []
    for place_host, place_path in PLACES:
        if host not in (None, place_host):
            continue
        scans = _good_full_newest_first(place_host, place_path)
        for i, scan in enumerate(scans[:history]):
            before = {u.username: u.bytes for u in scans[i + 1].users} if i + 1 < len(scans) else {}
            for user in scan.users:
                if name not in (None, user.username):
                    continue
                records.append(
                    ViewRecord(
                        task=scan.task_name,
                        hostname=scan.hostname,
                        target_path=scan.target_path,
                        username=user.username,
                        uid=user.uid,
                        scanned_at=scan.started_at,
                        files=user.files,
                        bytes=user.bytes,
                        allocated_bytes=user.allocated_bytes,
                        old_files=user.old_files,
                        old_bytes=user.old_bytes,
                        average_age_days=user.average_age_days,
                        inodes=user.inodes,
                        directories=user.directories,
                        disk_use_percent=scan.disk_use_percent,
                        errors=scan.errors,
                        previous_bytes=before.get(user.username),
                    )
                )
    records.sort(
        key=lambda r: (r.hostname, r.target_path, -r.scanned_at.timestamp(), -r.bytes, r.username)
    )
    return records


@pytest.mark.parametrize("history", [1, 2, 3, DAYS + 5])
@pytest.mark.parametrize(
    ("host", "path"), [(None, None), ("alpha", None), ("alpha", "/home"), ("beta", "/scratch")]
)
def test_system_records_match_brute_force(reader, host, path, history):
    got = system_records(reader, hostname=host, path=path, history=history)
    assert got == _expected_systems(host, path, history)
    assert len(got) == min(history, DAYS) * sum(
        1 for h, p in PLACES if host in (None, h) and path in (None, p)
    )


@pytest.mark.parametrize("history", [1, 2, DAYS + 5])
@pytest.mark.parametrize(
    ("name", "host"), [(None, None), ("bob", None), ("ann", "beta"), (None, "alpha"), ("dan", None)]
)
def test_user_records_match_brute_force(reader, name, host, history):
    got = user_records(reader, username=name, hostname=host, history=history)
    assert got == _expected_users(name, host, history)


def test_latest_view_skips_quick_and_failed_scans(reader):
    (beta,) = system_records(reader, hostname="beta")
    assert beta.scanned_at == START + timedelta(days=DAYS - 1, hours=2, minutes=2)
    assert beta.bytes != 1  # not the newer failed scan
    assert beta.previous_bytes is not None and beta.change_bytes == beta.bytes - beta.previous_bytes


def test_change_since_previous_scan(reader):
    latest = {(r.hostname, r.target_path): r for r in user_records(reader, username="bob")}
    deeper = user_records(reader, username="bob", hostname="beta", history=3)
    assert latest[("alpha", "/scratch")].change_bytes == 10_000  # grows 10 kB a day
    # bob is missing from beta's second-newest scan: no change for the newest, and
    # the scan before that is listed without him.
    assert latest[("beta", "/scratch")].previous_bytes is None
    assert [r.scanned_at.day for r in deeper] == [6, 4]
    assert deeper[1].change_bytes == 10_000


def test_users_present_only_in_old_scans_are_not_in_the_latest_view(reader):
    assert user_records(reader, username="dan") == []
    assert len(user_records(reader, username="dan", history=DAYS)) == len(PLACES)
    assert user_records(reader, username="nobody") == []
    assert system_records(reader, hostname="gamma") == []


def test_equal_sizes_are_ordered_by_name(reader):
    records = user_records(reader, hostname="alpha")
    names = [r.username for r in records if r.target_path == "/home"]
    assert names == ["bob", "ann", "cat"]  # bob largest; ann and cat equal
    assert records[0].as_json().keys() == set(JSON_KEYS)


def test_views_index_is_migrated(database):
    with database.engine.connect() as connection:
        indexes = {i["name"]: i["column_names"] for i in inspect(connection).get_indexes("scans")}
    assert indexes["ix_scans_full_place_started"] == [
        "kind",
        "status",
        "hostname",
        "target_path",
        "started_at",
    ]


def test_shipped_head_read_without_alembic_agrees_with_alembic():
    assert _shipped_head() == head_revision()


def test_opening_a_current_database_does_not_import_alembic(database):
    """The start-up fast path: alembic costs a view process a third of its start-up."""
    url = database.engine.url.render_as_string(hide_password=False)
    script = (
        "import sys\n"
        "from dkmonitor.db.engine import open_database\n"
        f"open_database({url!r}).dispose()\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
