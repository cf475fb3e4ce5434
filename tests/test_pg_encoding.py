"""A PostgreSQL database in SQL_ASCII (what initdb makes without a locale) still
takes and gives back non-ASCII names: dkmonitor talks utf8 to every server."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dkmonitor.db.engine import driver_url, open_database
from dkmonitor.db.tasks import create_task, get_task
from dkmonitor.taskspec import TaskSpec
from tests.fixtures.db import _pg_server_url


@pytest.fixture
def ascii_pg_url():
    server = make_url(_pg_server_url())
    name = f"dkm_ascii_{uuid.uuid4().hex[:12]}"
    admin = create_engine(driver_url(str(server)), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' "
                          "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_non_ascii_names_round_trip_on_a_sql_ascii_database(ascii_pg_url, tmp_path):
    database = open_database(ascii_pg_url)
    try:
        spec = TaskSpec(name="prüfung-jürgen", hostname="hôte", target_path=str(tmp_path),
                        usage_warning_threshold=80, usage_critical_threshold=90,
                        old_file_threshold=30)
        with database.session() as session:
            create_task(session, spec)
        with database.session() as session:
            assert get_task(session, "prüfung-jürgen").hostname == "hôte"
    finally:
        database.dispose()
