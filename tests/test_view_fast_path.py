"""`dkmonitor view` reads without SQLAlchemy when the schema is current, and falls back when not.

The start-up guard looks at ``python -X importtime``'s list of imported
modules rather than at a clock: importing SQLAlchemy alone made a view take
longer than the 0.3 s a person should wait (bench/history.py has the times).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime

import pytest
from sqlalchemy.engine import make_url

from dkmonitor.db.engine import make_engine, open_database
from dkmonitor.db.migrate import _config, current_revision, head_revision
from dkmonitor.db.readonly import HEAD_REVISION, connect_current
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.errors import DatabaseUnavailable
from dkmonitor.taskrun import UserUsageRow

HOST = "node7"
WHEN = datetime(2024, 5, 6, 2, 0, 0, 123456)


def _store_one_scan(url: str) -> None:
    db = open_database(url)
    try:
        with db.session() as session:
            store_scan(
                session,
                ScanRecord(
                    run_id="run-1",
                    task_name="scratch",
                    hostname=HOST,
                    target_path="/scratch",
                    kind="full",
                    status="ok",
                    started_at=WHEN,
                    finished_at=WHEN,
                    disk_use_percent=42.5,
                    files=3,
                    bytes=3000,
                    allocated_bytes=12288,
                    old_files=1,
                    old_bytes=1000,
                    average_age_days=12.0,
                    users=(UserUsageRow(1000, "ann", 3, 3000, 12288, 1, 1000, 12.0),),
                ),
            )
    finally:
        db.dispose()


def _url_in(config_text: str) -> str:
    """The database URL of a settings file written by tests/fixtures/cli.py."""
    (line,) = [line for line in config_text.splitlines() if line.startswith("url = ")]
    return line.removeprefix("url = ")


def _imported_modules(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_head_revision_constant_is_alembics_head():
    assert HEAD_REVISION == head_revision()


def test_view_of_a_current_database_imports_no_sqlalchemy(dkm):
    _store_one_scan(_url_in(dkm.config.read_text()))
    env = {k: v for k, v in {**os.environ, **dkm.env}.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-X", "importtime", "-m", "dkmonitor"]
    done = subprocess.run(
        [*command, "--config", str(dkm.config), "view", "system", HOST, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"scanned_at": "2024-05-06T02:00:00Z"' in done.stdout
    modules = _imported_modules(done.stderr)
    assert "dkmonitor.db.queries" in modules  # the parse works: the view's module is listed
    heavy = sorted(m for m in modules if m.split(".")[0] in ("sqlalchemy", "alembic"))
    assert heavy == [], f"view imported {heavy[:5]}"


def test_missing_sqlite_database_is_created_and_shown_empty(dkm_sqlite):
    db_file = dkm_sqlite.state_dir / "dkmonitor.db"
    assert connect_current(f"sqlite:///{db_file}") is None
    assert not db_file.exists(), "the fast path never creates the file"
    shown = dkm_sqlite("view", "system", HOST)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"no stored scans for host {HOST}"
    assert db_file.exists()
    with connect_current(f"sqlite:///{db_file}") as reader:  # now at head: the fast path
        assert reader.backend == "sqlite"


def test_new_database_is_migrated_then_read_directly(dkm):
    url = _url_in(dkm.config.read_text())
    assert connect_current(url) is None  # no tables at all
    shown = dkm("view", "users")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "no full scans stored yet"
    reader = connect_current(url)
    assert reader is not None
    reader.close()


def test_older_database_is_migrated_by_view(dkm):
    from alembic import command

    url = _url_in(dkm.config.read_text())
    engine = make_engine(url)
    with engine.connect() as connection:
        command.upgrade(_config(connection), "0001")
        connection.commit()
    assert connect_current(url) is None  # not at head: the usual path
    shown = dkm("view", "user", "ann", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    engine.dispose()


def test_database_error_on_the_fast_path_is_one_line(dkm_sqlite):
    """A driver error (here: tables gone) is reported like SQLAlchemy's were: one line, exit 1."""
    db_file = dkm_sqlite.state_dir / "dkmonitor.db"
    with sqlite3.connect(db_file) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES (?)", (HEAD_REVISION,))
    connection.close()
    shown = dkm_sqlite("view", "users")
    assert shown.returncode == 1
    assert shown.stderr.strip() == "dkmonitor: error: database: no such table: scans"


def test_not_a_database_file_is_reported_by_the_usual_path(dkm_sqlite):
    (dkm_sqlite.state_dir / "dkmonitor.db").write_text("not a database\n" * 100)
    shown = dkm_sqlite("view", "users")
    assert shown.returncode == 1
    # a corrupted file is an unusable database (issue 10 item 14): named, never a traceback
    assert shown.stderr.startswith("dkmonitor: error: database sqlite:///")
    assert shown.stderr.strip().endswith(": file is not a database")


@pytest.mark.postgres
def test_unreachable_postgresql_reads_as_on_the_usual_path(pg_url):
    dead = make_url(pg_url).set(port=1, password="hunter2").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnavailable) as fast:
        connect_current(dead)
    with pytest.raises(DatabaseUnavailable) as usual:
        open_database(dead)
    assert str(fast.value) == str(usual.value)
    assert "hunter2" not in str(fast.value) and ":***@" in str(fast.value)
