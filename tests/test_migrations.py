"""Migrations bring an empty database to head, and the models match the result."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from dkmonitor.db.engine import open_database
from dkmonitor.db.migrate import current_revision, head_revision, upgrade_to_head
from dkmonitor.db.models import Base

ROOT = Path(__file__).resolve().parent.parent


def test_empty_database_upgrades_to_head_and_matches_models(db_url):
    db = open_database(db_url)
    try:
        with db.engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(connection).get_table_names())
        assert {"tasks", "scans", "user_stats", "notifications", "actions"} <= tables
        assert upgrade_to_head(db.engine) == []  # nothing left to do the second time
    finally:
        db.dispose()


def test_older_database_is_upgraded_on_open(db_url):
    from alembic import command

    from dkmonitor.db.engine import make_engine
    from dkmonitor.db.migrate import _config

    engine = make_engine(db_url)
    with engine.connect() as connection:
        command.upgrade(_config(connection), "0001")
        connection.commit()
        assert current_revision(connection) == "0001"
    engine.dispose()
    db = open_database(db_url)
    with db.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    db.dispose()


def test_wheel_ships_migrations_and_migrates_without_the_source_tree(tmp_path):
    """A non-editable install has no repo beside it: the wheel alone must migrate."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("dkmonitor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "dkmonitor/migrations/env.py" in names
    assert any(n.startswith("dkmonitor/migrations/versions/0001") for n in names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    script = (
        "import dkmonitor, sys;"
        f"assert dkmonitor.__file__.startswith({str(unpacked)!r}), dkmonitor.__file__;"
        "from dkmonitor.db.engine import open_database;"
        f"open_database('sqlite:///{tmp_path}/w.db').dispose()"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
    )


def test_scan_shape_upgrade_keeps_existing_rows(db_url):
    """0006 on a database holding scans: users read 0 inodes/directories, nothing is lost."""
    from alembic import command
    from sqlalchemy import text

    from dkmonitor.db.engine import make_engine
    from dkmonitor.db.migrate import _config

    engine = make_engine(db_url)
    with engine.connect() as connection:
        command.upgrade(_config(connection), "0004")
        connection.execute(
            text(
                "INSERT INTO scans (id, run_id, task_name, hostname, target_path, kind, status, "
                "started_at, files, bytes, errors) VALUES (1, 'r1', 't', 'h', '/s', 'full', 'ok', "
                "'2024-01-01 00:00:00', 3, 300, 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO user_stats (scan_id, uid, username, files, bytes, "
                "allocated_bytes, old_files, old_bytes, average_age_days) "
                "VALUES (1, 7, 'ann', 3, 300, 4096, 0, 0, 1.0)"
            )
        )
        connection.commit()
    engine.dispose()
    db = open_database(db_url)
    try:
        with db.engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            user = connection.execute(
                text("SELECT username, bytes, inodes, directories FROM user_stats")
            ).one()
            assert tuple(user) == ("ann", 300, 0, 0)
            scan = connection.execute(text("SELECT bytes, inodes, directories FROM scans")).one()
            assert tuple(scan) == (300, None, None)
            tables = set(inspect(connection).get_table_names())
        assert {"scan_histograms", "scan_top_directories"} <= tables
    finally:
        db.dispose()
