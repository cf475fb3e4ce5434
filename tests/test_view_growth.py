"""`dkmonitor view growth` and the task column of the view tables, on both databases.

The stored history is small and written out in the test, so every expected
growth below is worked out by hand from it (not by the code under test).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest

from dkmonitor.clock import utcnow
from dkmonitor.db.engine import open_database
from dkmonitor.db.growth import GROWTH_KEYS, growth_records
from dkmonitor.db.readonly import connect_current
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.taskrun import UserUsageRow

# Offsets back from "now", and each user's bytes in that scan of h1:/scratch.
SCRATCH = [
    (timedelta(days=10), {"ann": 100, "bob": 1000}),
    (timedelta(days=3), {"ann": 500, "bob": 1000}),
    (timedelta(hours=1), {"ann": 800, "bob": 900, "cat": 50}),
]
UIDS = {"ann": 1001, "bob": 1002, "cat": 1003}


def _record(run_id, started, sizes, *, task="scratch", host="h1", path="/scratch", **kw):
    users = tuple(
        UserUsageRow(UIDS[name], name, 1, size, size, 0, 0, 1.0) for name, size in sizes.items()
    )
    return ScanRecord(
        run_id=run_id,
        task_name=task,
        hostname=host,
        target_path=path,
        kind=kw.get("kind", "full"),
        status=kw.get("status", "ok"),
        started_at=started,
        finished_at=started,
        disk_use_percent=50.0,
        files=len(users),
        bytes=sum(sizes.values()),
        users=users if kw.get("kind", "full") == "full" else (),
    )


def _seed(url: str, now: datetime) -> None:
    db = open_database(url)
    try:
        with db.session() as session:
            for i, (ago, sizes) in enumerate(SCRATCH):
                store_scan(session, _record(f"s{i}", now - ago, sizes))
            # neither a quick scan nor a failed full scan moves the comparison
            store_scan(session, _record("quick", now - timedelta(minutes=30), {}, kind="quick"))
            store_scan(
                session,
                _record("failed", now - timedelta(minutes=20), {"ann": 10**9}, status="failed"),
            )
            # a place with one scan only: nothing to compare with
            store_scan(session, _record("h2", now - timedelta(hours=2), {"ann": 5}, host="h2"))
    finally:
        db.dispose()


@pytest.fixture
def reader(db_url):
    now = datetime(2025, 6, 1, 12, 0, 0, 250000)
    _seed(db_url, now)
    connection = connect_current(db_url)
    assert connection is not None
    with connection:
        yield connection, now


def _growth(records):
    return [(r.hostname, r.username, r.bytes_before, r.bytes, r.growth_bytes) for r in records]


def test_growth_over_a_day_compares_with_the_scan_before_the_window(reader):
    connection, now = reader
    records = growth_records(connection, timedelta(hours=24), now)
    # 3 days ago -> 1 hour ago: ann 500 -> 800, cat 0 -> 50; bob shrank (not listed)
    assert _growth(records) == [("h1", "ann", 500, 800, 300), ("h1", "cat", 0, 50, 50)]
    assert records[0].since == now - timedelta(days=3)
    assert records[0].scanned_at == now - timedelta(hours=1)


def test_growth_over_a_week_and_a_month(reader):
    connection, now = reader
    week = growth_records(connection, timedelta(days=7), now)
    assert _growth(week) == [("h1", "ann", 100, 800, 700), ("h1", "cat", 0, 50, 50)]
    # no scan is 30 days old: the oldest scan in the window is the baseline
    month = growth_records(connection, timedelta(days=30), now)
    assert _growth(month) == _growth(week)


def test_growth_top_and_host_filter(reader):
    connection, now = reader
    assert _growth(growth_records(connection, timedelta(days=7), now, top=1)) == [
        ("h1", "ann", 100, 800, 700)
    ]
    assert growth_records(connection, timedelta(days=7), now, hostname="h2") == []


def test_growth_boundary_scan_exactly_at_the_window_start_is_the_baseline(reader):
    connection, now = reader
    exactly = growth_records(connection, timedelta(days=3), now)
    assert exactly[0].since == now - timedelta(days=3)
    assert exactly[0].growth_bytes == 300


def test_view_growth_command_json_csv_and_table(dkm):
    _seed(dkm_url(dkm), utcnow())
    done = dkm("view", "growth", "--since", "7d", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(d["username"], d["growth_bytes"]) for d in data] == [("ann", 700), ("cat", 50)]
    assert all(list(d) == list(GROWTH_KEYS) for d in data)
    assert data[0]["since"].endswith("Z")
    done = dkm("view", "growth", "--since", "24h", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["username"], r["growth_bytes"]) for r in rows] == [("ann", "300"), ("cat", "50")]
    done = dkm("view", "growth", "--host", "h1")
    assert done.returncode == 0
    assert "ann" in done.stdout and "+300 B" in done.stdout and "bob" not in done.stdout


def test_view_growth_rejects_a_bad_window_in_one_line(dkm_sqlite):
    done = dkm_sqlite("view", "growth", "--since", "yesterday")
    assert done.returncode == 2
    assert "yesterday" in done.stderr and "24h" in done.stderr
    assert "Traceback" not in done.stderr


def dkm_url(dkm) -> str:
    (line,) = [x for x in dkm.config.read_text().splitlines() if x.startswith("url = ")]
    return line.removeprefix("url = ")


def test_view_tables_show_the_task(dkm):
    """Three tasks on one target at one time: three rows told apart by the task."""
    when = datetime(2025, 1, 2, 3, 4)
    db = open_database(dkm_url(dkm))
    try:
        with db.session() as session:
            for task in ("scratch-a", "scratch-b", "scratch-c"):
                store_scan(session, _record(task, when, {"bob": 4096}, task=task))
    finally:
        db.dispose()
    done = dkm("view", "user", "bob", "--history", "3")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["user", "task", "host"]
    assert sorted(row.split()[1] for row in rows) == ["scratch-a", "scratch-b", "scratch-c"]
    done = dkm("view", "systems")
    assert "task" in done.stdout.splitlines()[0]
