"""The plain-SQL write path (dkmonitor.db.plainwrite) stores what SQLAlchemy stores.

A run against a database already at head stores its record and reads its
tasks with the driver alone; here the same record is stored both ways on
each backend and every column of every row is compared (values and their
Python types, as the driver hands them back), and the column lists are
checked against the models so the two declarations cannot drift.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from dkmonitor.db.engine import Database, open_current, open_database
from dkmonitor.db.models import Base
from dkmonitor.db.plainwrite import (
    SCAN_TABLE,
    TABLES,
    TASK_TABLE,
    list_tasks_plain,
    scan_columns,
    store_scan_plain,
)
from dkmonitor.db.readonly import connect_current
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.db.tasks import create_task, list_tasks
from dkmonitor.taskrun import HistogramBucket, TopDirectory, UserUsageRow
from dkmonitor.taskspec import TASK_FIELDS, TaskSpec

WHEN = datetime(2024, 5, 6, 2, 0, 0, 123456)
ROW_TYPES: dict[str, Any] = {
    "users": UserUsageRow,
    "histograms": HistogramBucket,
    "top_directories": TopDirectory,
}

FULL = ScanRecord(
    run_id="sqlalchemy",
    task_name="scratch",
    hostname="node7",
    target_path="/scratch/ünï",
    kind="full",
    status="ok",
    started_at=WHEN,
    finished_at=datetime(2024, 5, 6, 2, 3, 4, 5),
    disk_total=10**13,
    disk_used=4 * 10**12,
    disk_available=6 * 10**12,
    disk_use_percent=40.0,
    files=3,
    bytes=3000,
    allocated_bytes=12288,
    old_files=1,
    old_bytes=1000,
    average_age_days=12,  # an int where the column is a float: bound as SQLAlchemy binds it
    inodes=5,
    directories=2,
    errors=1,
    message=None,
    users=(
        UserUsageRow(1000, "ann", 2, 2000, 8192, 1, 1000, 12.5, 3, 1),
        UserUsageRow(2**40, "jürgen", 1, 1000, 4096, 0, 0, 0.0, 1, 0),
    ),
    histograms=(HistogramBucket("size", 0, 2, 20), HistogramBucket("age", 30, 1, 1000)),
    top_directories=(TopDirectory("bytes", 1, "/scratch/ünï/a", 2, 2000, 1000),),
)
QUICK = ScanRecord(
    run_id="sqlalchemy-quick", task_name="scratch", hostname="node7", target_path="/scratch",
    kind="quick", status="ok", started_at=WHEN, finished_at=WHEN, disk_total=100,
    disk_used=50, disk_available=50, disk_use_percent=50.0,
)


def _model_columns(table: str) -> set[str]:
    return {column.name for column in Base.metadata.tables[table].columns}


def test_the_columns_written_are_the_models_columns():
    assert _model_columns(SCAN_TABLE) - {"id"} == set(scan_columns(FULL))
    for key, table in TABLES.items():
        assert {f.name for f in fields(ROW_TYPES[key])} == _model_columns(table) - {
            "id", "scan_id"}, table
    assert set(TABLES) == {f.name for f in fields(ScanRecord)} - set(scan_columns(FULL))
    assert set(TASK_FIELDS) == _model_columns(TASK_TABLE) - {"id", "created_at", "updated_at"}


def _every_row(url: str, scan_id: int) -> dict[str, list[list[tuple[str, str, object]]]]:
    """Every column of the scan's rows in every table, as (name, type, value), ids left out."""
    reader = connect_current(url)
    assert reader is not None
    found = {}
    try:
        cursor = reader.connection.cursor()
        for table in (SCAN_TABLE, *TABLES.values()):
            key = "id" if table == SCAN_TABLE else "scan_id"
            marker = "?" if reader.backend == "sqlite" else "%s"
            cursor.execute(f"SELECT * FROM {table} WHERE {key} = {marker} ORDER BY id",
                           (scan_id,))
            names = [d[0] for d in cursor.description]
            found[table] = [
                [(name, type(value).__name__, value)
                 for name, value in zip(names, row, strict=True)
                 if name not in ("id", "scan_id", "run_id")]
                for row in cursor.fetchall()
            ]
        cursor.close()
    finally:
        reader.close()
    return found


def _stored_both_ways(url: str, record: ScanRecord) -> tuple[int, int]:
    database = open_database(url)  # creates and migrates: at head from here on
    try:
        with database.session() as session:
            by_orm = store_scan(session, record)
    finally:
        database.dispose()
    writer = connect_current(url, readonly=False)
    assert writer is not None
    try:
        plain_record = replace(record, run_id=record.run_id + "-plain")
        by_plain = store_scan_plain(writer, plain_record)
        assert store_scan_plain(writer, plain_record) == by_plain  # stored once
    finally:
        writer.close()
    return by_orm, by_plain


def test_a_full_record_is_stored_alike_both_ways(db_url):
    by_orm, by_plain = _stored_both_ways(db_url, FULL)
    assert by_plain != by_orm
    expected = _every_row(db_url, by_orm)
    assert [len(rows) for rows in expected.values()] == [1, 2, 2, 1]
    assert _every_row(db_url, by_plain) == expected


def test_a_quick_record_is_stored_alike_both_ways(db_url):
    by_orm, by_plain = _stored_both_ways(db_url, QUICK)
    expected = _every_row(db_url, by_orm)
    assert expected[SCAN_TABLE] and not expected["user_stats"]
    assert _every_row(db_url, by_plain) == expected


def test_tasks_read_plain_are_the_tasks_read_through_sqlalchemy(db_url):
    database = open_database(db_url)
    try:
        with database.session() as session:
            create_task(session, TaskSpec("b", "node1", "/b", 80.0, 90.0, 30.0,
                                          delete_old_files=True, enabled=False,
                                          purge_target_percent=70.0))
            create_task(session, TaskSpec("a", "node2", "/a", 80.0, 95.0, 7.5,
                                          relocation_path="/r", clean_always=True))
            create_task(session, TaskSpec("c", "node1", "/c", 1.0, 2.0, 3.0))
        with database.session() as session:
            expected = list_tasks(session)
    finally:
        database.dispose()
    current = open_current(db_url)
    try:
        assert current.plain is not None
        assert list_tasks_plain(current.plain) == expected
        assert [task.name for task in expected] == ["b", "c", "a"]
    finally:
        current.dispose()


def test_open_current_migrates_a_new_database_and_then_goes_plain(db_url):
    first = open_current(db_url)  # empty: the usual way, which creates the schema
    try:
        assert first.plain is None
    finally:
        first.dispose()
    second = open_current(db_url)
    try:
        assert isinstance(second, Database) and second.plain is not None
        assert second._engine is None  # nothing built until something asks
    finally:
        second.dispose()


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


HEAVY = ("sqlalchemy", "alembic", "jinja2", "matplotlib", "prometheus_client", "smtplib")


def _run_with_importtime(dkm, *args: str) -> tuple[set[str], str]:
    env = {k: v for k, v in {**os.environ, **dkm.env}.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dkmonitor", "--config", str(dkm.config),
         "-q", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return _imported(done.stderr), done.stderr


def test_run_path_at_head_imports_no_sqlalchemy_before_or_after_its_walk(dkm, tmp_path):
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "f").write_bytes(b"x" * 100)
    assert dkm("task", "list").returncode == 0  # creates the schema: at head from here on
    modules, _ = _run_with_importtime(dkm, "run", "path", str(target), "--old-days", "90")
    assert "dkmonitor.db.plainwrite" in modules and "dkmonitor.scan.walker" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(
        "dkmonitor.clean"))
    assert heavy == [], f"run path imported {heavy[:5]}"


def test_run_quick_at_head_imports_no_sqlalchemy_and_stores_its_row(dkm, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    made = dkm("task", "create", "q1", "--target", str(target), "--warning", "99",
               "--critical", "100", "--old-days", "90")
    assert made.returncode == 0, made.stderr
    modules, _ = _run_with_importtime(dkm, "run", "quick", "q1")
    assert "dkmonitor.db.plainwrite" in modules  # the parse works
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"run quick imported {heavy[:5]}"
    url = next(line.removeprefix("url = ") for line in dkm.config.read_text().splitlines()
               if line.startswith("url = "))
    with connect_current(url) as reader:  # type: ignore[union-attr]
        stored = reader.rows("SELECT task_name, kind, status, target_path FROM scans")
    assert stored == [("q1", "quick", "ok", str(target))]


def test_a_pending_journal_row_is_seen_and_the_table_is_the_models(db_url):
    from dkmonitor.db.models import Action
    from dkmonitor.db.plainwrite import ACTION_TABLE, nothing_pending
    from dkmonitor.enums import PENDING

    assert ACTION_TABLE == Action.__tablename__
    open_database(db_url).dispose()
    current = open_current(db_url)
    try:
        assert nothing_pending(current, "scratch", "node7")
        with current.session() as session:
            session.add(Action(task_name="scratch", hostname="node7", action="delete",
                               outcome=PENDING, path=b"/scratch/x", created_at=WHEN))
        assert not nothing_pending(current, "scratch", "node7")
        assert nothing_pending(current, "scratch", "node8")  # another host's row
        assert nothing_pending(current, "other", "node7")
    finally:
        current.dispose()
    assert nothing_pending(None, "scratch", "node7")  # no database: nothing to reconcile
