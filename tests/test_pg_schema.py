"""Migration 0009 on both databases: instants on PostgreSQL, UNIQUE user rows, indexes, CHECKs.

A database at 0007 holding rows with known naive UTC times is upgraded in
place: every time reads back identical (through SQLAlchemy and through the
view's bare driver), nothing is lost (on SQLite the rebuilt ``scans`` must
not cascade), and on PostgreSQL the columns are ``timestamp with time zone``
so that ``now() - started_at`` is right whatever the session's time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg2
import pytest
from alembic import command
from sqlalchemy import Engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError

from dkmonitor.db.backends import dbapi_kwargs
from dkmonitor.db.engine import make_engine, open_database
from dkmonitor.db.migrate import _config, current_revision, head_revision, restore_foreign_keys
from dkmonitor.db.models import Action, Exemption, Notification, Scan, Task, utcnow
from dkmonitor.db.queries import system_records
from dkmonitor.db.readonly import connect_current
from dkmonitor.dburl import as_url
from dkmonitor.enums import CHECKS
from dkmonitor.errors import DkmError

NEW_YORK = "America/New_York"


def _at(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value)


# (table, column) -> the naive UTC time stored at 0007, as SQLAlchemy writes it on SQLite.
TIMES = {
    ("tasks", "created_at"): "2024-01-02 03:04:05.000006",
    ("tasks", "updated_at"): "2024-06-30 23:59:59.999999",
    ("scans", "started_at"): "2024-03-31 01:30:00.250000",  # the night Europe moves its clocks
    ("scans", "finished_at"): "2024-03-31 02:45:10.000000",
    ("notifications", "created_at"): "2024-11-03 06:30:00.000000",  # New York's clocks go back
    ("actions", "created_at"): "2024-07-01 12:00:00.000001",
    ("actions", "restored_at"): "2024-07-02 00:00:00.000000",
    ("actions", "finished_at"): "2024-07-01 12:00:01.500000",
    ("exemptions", "expires_at"): "2030-01-01 00:00:00.000000",
    ("exemptions", "created_at"): "2024-02-29 12:00:00.000000",
}
MODELS = {
    "tasks": Task,
    "scans": Scan,
    "notifications": Notification,
    "actions": Action,
    "exemptions": Exemption,
}


def _t(table: str, column: str) -> str:
    return TIMES[(table, column)]


def _seed(conn, *, duplicate_user: bool = False, scan_kind: str = "full") -> None:
    """Rows of every table touched by 0009, written as SQL at revision 0007 (the scan is id 1)."""
    statements = [
        "INSERT INTO tasks (name, hostname, target_path, delete_old_files, delete_when_full, "
        "usage_warning_threshold, usage_critical_threshold, old_file_threshold, "
        "email_usage_warnings, email_data_alterations, email_top_percent, enabled, age_basis, "
        f"created_at, updated_at) VALUES ('t', 'h', '/s', false, false, 80, 90, 30, false, "
        f"true, 25, true, 'used', '{_t('tasks', 'created_at')}', '{_t('tasks', 'updated_at')}')",
        "INSERT INTO scans (run_id, task_name, hostname, target_path, kind, status, "
        "started_at, finished_at, disk_use_percent, files, bytes, errors) VALUES "
        f"('r1', 't', 'h', '/s', '{scan_kind}', 'ok', '{_t('scans', 'started_at')}', "
        f"'{_t('scans', 'finished_at')}', 50.0, 3, 300, 0)",
        "INSERT INTO user_stats (scan_id, uid, username, files, bytes, allocated_bytes, "
        "old_files, old_bytes, average_age_days) VALUES (1, 7, 'ann', 2, 200, 8192, 0, 0, 1.0), "
        f"(1, {7 if duplicate_user else 8}, 'bob', 1, 100, 4096, 0, 0, 2.0)",
        "INSERT INTO scan_histograms (scan_id, kind, lower_bound, files, bytes) "
        "VALUES (1, 'size', 0, 3, 300)",
        "INSERT INTO scan_top_directories (scan_id, ranking, rank, path, files, bytes, old_bytes) "
        "VALUES (1, 'bytes', 1, '/s/a', 3, 300, 0)",
        "INSERT INTO notifications (scan_id, task_name, hostname, username, address, kind, "
        "subject, body, created_at, delivered) VALUES (1, 't', 'h', 'ann', 'ann@example.org', "
        f"'warning', 's', 'b', '{_t('notifications', 'created_at')}', true)",
        "INSERT INTO actions (scan_id, task_name, hostname, action, outcome, path, size, "
        "created_at, restored_at, finished_at) VALUES (1, 't', 'h', 'move', 'done', :path, 5, "
        f"'{_t('actions', 'created_at')}', '{_t('actions', 'restored_at')}', "
        f"'{_t('actions', 'finished_at')}')",
        "INSERT INTO exemptions (task_name, username, expires_at, reason, created_by, created_at) "
        f"VALUES ('t', 'ann', '{_t('exemptions', 'expires_at')}', 'thesis', 'root', "
        f"'{_t('exemptions', 'created_at')}')",
    ]
    for sql in statements:
        conn.execute(text(sql), {"path": b"/s/a/f\xff"} if ":path" in sql else {})


def _make_old(url: str, **seed) -> None:
    """A database at revision 0007 holding the seeded rows."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            command.upgrade(_config(conn), "0007")
            conn.commit()
            if engine.dialect.name == "sqlite":
                restore_foreign_keys(conn)
            _seed(conn, **seed)
            conn.commit()
    finally:
        engine.dispose()


def _stored_times(engine: Engine) -> dict[tuple[str, str], datetime]:
    """Every seeded time, read through the models (``UTCDateTime``)."""
    found = {}
    with engine.connect() as conn:
        for table, column in TIMES:
            model = MODELS[table]
            query = select(getattr(model, column)).order_by(model.id).limit(1)  # the seeded row
            found[(table, column)] = conn.execute(query).scalar_one()
    return found


def _expected() -> dict[tuple[str, str], datetime]:
    return {key: _at(value) for key, value in TIMES.items()}


def _kept_rows(engine: Engine) -> tuple[int, ...]:
    """Row counts and the scan links that a cascading rebuild of ``scans`` would destroy."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(text(sql)).scalar_one()
            for sql in (
                "SELECT count(*) FROM user_stats WHERE scan_id = 1",
                "SELECT count(*) FROM scan_histograms WHERE scan_id = 1",
                "SELECT count(*) FROM scan_top_directories WHERE scan_id = 1",
                "SELECT count(*) FROM notifications WHERE scan_id = 1",
                "SELECT count(*) FROM actions WHERE scan_id = 1",
                "SELECT count(*) FROM exemptions",
            )
        )


def _time_types(engine: Engine) -> set[str]:
    """PostgreSQL: the data types of every time column of the seeded tables."""
    with engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT DISTINCT data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND data_type LIKE 'timestamp%' "
                    "AND table_name IN ('tasks', 'scans', 'notifications', 'actions', "
                    "'exemptions', 'user_stats', 'scan_histograms', 'scan_top_directories')"
                )
            ).scalars()
        )


@pytest.fixture
def upgraded(db_url) -> Iterator[Engine]:
    """The seeded 0007 database, upgraded to head the way every command does."""
    _make_old(db_url)
    db = open_database(db_url)
    try:
        yield db.engine
    finally:
        db.dispose()


def test_upgrade_in_place_keeps_every_time_and_row(upgraded, db_url):
    with upgraded.connect() as conn:
        assert current_revision(conn) == head_revision() == "0009"
    assert _stored_times(upgraded) == _expected()
    assert _kept_rows(upgraded) == (2, 1, 1, 1, 1, 1)
    # the view reads with the bare driver: the same naive UTC time
    reader = connect_current(db_url)
    assert reader is not None
    with reader:
        (record,) = system_records(reader)
    assert record.scanned_at == _at(_t("scans", "started_at"))
    assert record.as_json()["scanned_at"] == "2024-03-31T01:30:00Z"


def test_sqlite_foreign_keys_are_on_again_after_the_upgrade(sqlite_url):
    """The migration turned them off; the pool must not hand that connection out so."""
    _make_old(sqlite_url)
    db = open_database(sqlite_url)
    try:
        with db.engine.connect() as conn:  # the pooled connection that migrated
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()


def test_postgresql_columns_are_timestamp_with_time_zone(pg_url):
    _make_old(pg_url)
    engine = make_engine(pg_url)
    try:
        assert _time_types(engine) == {"timestamp without time zone"}
    finally:
        engine.dispose()
    db = open_database(pg_url)
    try:
        assert _time_types(db.engine) == {"timestamp with time zone"}
    finally:
        db.dispose()


def _new_york_engine(url: str) -> Engine:
    """dkmonitor's engine, but every session then switched to New York time."""
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _new_york(dbapi_connection, _record):  # registered after dkmonitor's own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET TIME ZONE '{NEW_YORK}'")
        cursor.close()
        dbapi_connection.commit()

    return engine


def test_times_mean_instants_whatever_the_session_time_zone(pg_url):
    """The server's default zone is New York: the upgrade, dkmonitor and people all agree."""
    _make_old(pg_url)
    database = as_url(pg_url).database
    admin = make_engine(pg_url)
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE \"{database}\" SET TimeZone = '{NEW_YORK}'"))
        conn.commit()
    admin.dispose()
    engine = _new_york_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == NEW_YORK
        db = open_database(pg_url)  # its own engine: dkmonitor's sessions are UTC
        now = utcnow()
        try:
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
            reader = connect_current(pg_url)  # and the view's bare driver too
            assert reader is not None
            with reader:
                assert reader.rows("SHOW TimeZone") == [("UTC",)]
            with db.session() as session:
                session.add(Scan(run_id="now", task_name="t", hostname="h", target_path="/s",
                                 kind="quick", status="ok", started_at=now, finished_at=now))
        finally:
            db.dispose()
        assert _stored_times(engine) == _expected()  # read in New York: still naive UTC
        with engine.connect() as conn:
            stored = conn.execute(select(Scan.started_at).where(Scan.run_id == "now")).scalar_one()
        assert stored == now
        # someone at psql, in New York: now() - started_at is minutes, not five hours
        person = psycopg2.connect(**dbapi_kwargs(as_url(pg_url)))
        try:
            cursor = person.cursor()
            cursor.execute("SHOW TimeZone")
            assert cursor.fetchone()[0] == NEW_YORK
            cursor.execute("SELECT now() - started_at FROM scans WHERE run_id = 'now'")
            (elapsed,) = cursor.fetchone()
            cursor.execute("SELECT started_at FROM scans WHERE id = 1")
            (old_scan,) = cursor.fetchone()
        finally:
            person.close()
        assert timedelta(0) <= elapsed < timedelta(minutes=5)
        # 01:30 UTC on 31 March 2024 was 21:30 the evening before in New York (EDT)
        assert old_scan.isoformat() == "2024-03-30T21:30:00.250000-04:00"
    finally:
        engine.dispose()


def test_upgrade_under_a_non_utc_server_zone_converts_as_utc(pg_url):
    """The conversion reads the stored wall times as UTC even when the server's zone is not."""
    _make_old(pg_url)
    database = as_url(pg_url).database
    admin = make_engine(pg_url)
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE \"{database}\" SET TimeZone = '{NEW_YORK}'"))
        conn.commit()
    admin.dispose()
    engine = _new_york_engine(pg_url)  # the migration runs in a New York session
    try:
        from dkmonitor.db.migrate import upgrade_to_head

        assert upgrade_to_head(engine)[-1] == "0009"  # from 0007: 0008 first
        assert _stored_times(engine) == _expected()
    finally:
        engine.dispose()


def test_a_second_row_for_the_same_scan_and_uid_is_refused(upgraded):
    with upgraded.connect() as conn, pytest.raises(IntegrityError):
        conn.execute(
            text(
                "INSERT INTO user_stats (scan_id, uid, username, files, bytes, allocated_bytes, "
                "old_files, old_bytes, average_age_days) VALUES (1, 7, 'ann2', 0, 0, 0, 0, 0, 0)"
            )
        )
    with upgraded.connect() as conn:  # another uid in the same scan is fine
        conn.execute(
            text(
                "INSERT INTO user_stats (scan_id, uid, username, files, bytes, allocated_bytes, "
                "old_files, old_bytes, average_age_days) VALUES (1, 9, 'cy', 0, 0, 0, 0, 0, 0)"
            )
        )
        conn.commit()


@pytest.mark.parametrize(("name", "table", "column"), [c[:3] for c in CHECKS])
def test_a_word_outside_its_enumeration_is_refused(upgraded, name, table, column):
    with upgraded.connect() as conn:
        with pytest.raises(IntegrityError) as refused:
            conn.execute(text(f"UPDATE {table} SET {column} = 'bogus'"))
        assert name in str(refused.value) or "CHECK constraint failed" in str(refused.value)
        conn.rollback()
        values = dict((c[1], c[3]) for c in CHECKS if c[0] == name)[table]
        for value in values:  # every declared word is accepted
            conn.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": value})
        conn.rollback()


def test_the_scan_id_foreign_keys_are_indexed(upgraded):
    inspector = inspect(upgraded)
    for table in ("notifications", "actions"):
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table)}
        assert indexes[f"ix_{table}_scan_id"] == ["scan_id"]
    user_indexes = {i["name"]: i for i in inspector.get_indexes("user_stats")}
    unique = user_indexes["uq_user_stats_scan_uid"]
    assert unique["column_names"] == ["scan_id", "uid"] and unique["unique"]
    assert "ix_user_stats_scan_id" not in user_indexes  # the unique index serves scan_id


def test_duplicate_user_rows_stop_the_upgrade_with_a_clear_message(db_url):
    _make_old(db_url, duplicate_user=True)
    with pytest.raises(DkmError, match=r"user_stats holds 2 rows for scan 1 and uid 7"):
        open_database(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == "0007"
            assert conn.execute(text("SELECT count(*) FROM user_stats")).scalar_one() == 2
        if engine.dialect.name == "postgresql":  # nothing half done
            assert _time_types(engine) == {"timestamp without time zone"}
    finally:
        engine.dispose()


def test_an_unknown_word_stops_the_upgrade_naming_it(db_url):
    _make_old(db_url, scan_kind="weekly")
    refusal = r"scans\.kind holds 'weekly' in 1 row.*allowed: quick, full"
    with pytest.raises(DkmError, match=refusal):
        open_database(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == "0007"
    finally:
        engine.dispose()


def test_the_cli_says_what_to_fix_in_one_line(dkm_factory, sqlite_url):
    _make_old(sqlite_url, duplicate_user=True)
    result = dkm_factory(sqlite_url)("database", "upgrade")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "uid 7" in lines[0] and "Traceback" not in result.stderr


def test_downgrade_then_upgrade_round_trips(upgraded, db_url):
    with upgraded.connect() as conn:
        command.downgrade(_config(conn), "0007")
        conn.commit()
        if upgraded.dialect.name == "sqlite":
            restore_foreign_keys(conn)
    assert _kept_rows(upgraded) == (2, 1, 1, 1, 1, 1)
    with upgraded.connect() as conn:
        assert current_revision(conn) == "0007"
        raw = conn.execute(text("SELECT started_at FROM scans WHERE id = 1")).scalar_one()
        names = {i["name"] for i in inspect(conn).get_indexes("actions")}
        user_names = {i["name"] for i in inspect(conn).get_indexes("user_stats")}
        conn.execute(text("UPDATE scans SET kind = 'bogus'"))  # no CHECK any more
        conn.rollback()
    assert "ix_actions_scan_id" not in names and "ix_user_stats_scan_id" in user_names
    if upgraded.dialect.name == "postgresql":
        assert _time_types(upgraded) == {"timestamp without time zone"}
        assert raw == _at(_t("scans", "started_at"))  # the UTC wall time again, naive
    else:
        assert raw == _t("scans", "started_at")
    db = open_database(db_url)
    try:
        assert _stored_times(db.engine) == _expected()
        assert _kept_rows(db.engine) == (2, 1, 1, 1, 1, 1)
        with db.engine.connect() as conn, pytest.raises(IntegrityError):
            conn.execute(text("UPDATE scans SET kind = 'bogus'"))
    finally:
        db.dispose()
