"""`dkmonitor database list|status|upgrade|clean|drop|export` on both backends."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url

from dkmonitor.db.engine import open_database
from dkmonitor.db.export import EXPORT_KEYS
from dkmonitor.db.maintenance import clean_tables, purge_history
from dkmonitor.db.migrate import head_revision
from dkmonitor.db.models import Action, Notification, Scan, Task, UserStat, utcnow
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.db.tasks import create_task
from dkmonitor.taskrun import UserUsageRow
from dkmonitor.taskspec import TaskSpec

NOW = utcnow()
TABLES = ("tasks", "scans", "user_stats", "notifications", "actions")


def url_of(dkm) -> str:
    return dkm.config.read_text().split("url = ", 1)[1].splitlines()[0]


def record(days_ago: float, *, host="h1", task="scratch", users=2, kind="full") -> ScanRecord:
    started = NOW - timedelta(days=days_ago)
    return ScanRecord(
        run_id=str(uuid.uuid4()),
        task_name=task,
        hostname=host,
        target_path="/scratch",
        kind=kind,
        status="ok",
        started_at=started,
        finished_at=started + timedelta(minutes=1),
        disk_total=1000,
        disk_used=500,
        disk_available=500,
        disk_use_percent=50.0,
        files=10 * users if kind == "full" else None,
        bytes=1000 * users if kind == "full" else None,
        users=tuple(
            UserUsageRow(1000 + n, f"user{n}", 10, 1000, 4096, 1, 10, 5.0) for n in range(users)
        )
        if kind == "full"
        else (),
    )


def seed(url: str) -> dict[str, int]:
    """Scans 1, 10 and 100 days old, a task, a mail and an action per scan age."""
    db = open_database(url)
    ids = {}
    try:
        with db.session() as session:
            create_task(
                session,
                TaskSpec(
                    name="scratch",
                    hostname="h1",
                    target_path="/scratch",
                    usage_warning_threshold=80,
                    usage_critical_threshold=90,
                    old_file_threshold=30,
                ),
            )
            for days in (1, 10, 100):
                scan_id = store_scan(session, record(days))
                ids[f"scan{days}"] = scan_id
                created = NOW - timedelta(days=days)
                session.add(
                    Notification(
                        scan_id=scan_id,
                        task_name="scratch",
                        hostname="h1",
                        username="user0",
                        address="user0@example.edu",
                        kind="warning",
                        created_at=created,
                        delivered=True,
                    )
                )
                session.add(
                    Action(
                        scan_id=scan_id,
                        task_name="scratch",
                        hostname="h1",
                        action="move",
                        outcome="done",
                        path=b"/scratch/f",
                        size=1,
                        created_at=created,
                    )
                )
    finally:
        db.dispose()
    return ids


def table_rows(url: str) -> dict[str, int]:
    db = open_database(url, migrate=False)
    try:
        with db.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Task, Scan, UserStat, Notification, Action)
            }
    finally:
        db.dispose()


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dkmonitor: error: ")
    return lines[0]


# ---------------------------------------------------------------- status and list


def test_status_of_a_missing_sqlite_database_does_not_create_it(dkm_sqlite):
    db_file = dkm_sqlite.state_dir / "dkmonitor.db"
    result = dkm_sqlite("database", "status")
    assert result.returncode == 0, result.stderr
    assert "does not exist yet" in result.stdout
    listed = dkm_sqlite("database", "list")
    assert listed.returncode == 0 and "does not exist yet" in listed.stdout
    as_json = dkm_sqlite("database", "status", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert (report["exists"], report["scans"], report["revision"]) == (False, 0, None)
    assert not db_file.exists()


@pytest.mark.postgres
def test_status_of_a_missing_postgresql_database(dkm_factory, pg_url):
    missing = make_url(pg_url).set(database="dkm_missing_" + uuid.uuid4().hex[:8])
    dkm = dkm_factory(missing.render_as_string(hide_password=False))
    result = dkm("database", "status")
    assert result.returncode == 0, result.stderr
    assert "does not exist yet" in result.stdout


def test_status_and_list_of_a_populated_database(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    result = dkm("database", "status")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    fields = {key: value.strip() for key, value in fields.items()}
    assert fields["database"] == make_url(url).render_as_string(hide_password=True)
    assert fields["revision"].startswith(head_revision())
    assert fields["pending"] == "none"
    assert fields["size"].split()[1] in ("B", "KiB", "MiB", "GiB")
    assert fields["scans"] == "3 from 1 host(s)"
    oldest = datetime.fromisoformat(fields["oldest"].removesuffix(" UTC"))
    newest = datetime.fromisoformat(fields["newest"].removesuffix(" UTC"))
    assert abs(oldest - (NOW - timedelta(days=100))) < timedelta(seconds=2)
    assert abs(newest - (NOW - timedelta(days=1))) < timedelta(seconds=2)
    assert fields["spool"].startswith("0 run(s) waiting")

    as_json = dkm("database", "status", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["database"] == fields["database"]
    assert (report["exists"], report["revision"], report["head"]) == (
        True, head_revision(), head_revision())
    assert (report["pending"], report["scans"], report["hosts"]) == ([], 3, 1)
    assert report["size_bytes"] > 0 and report["spooled_runs"] == 0
    assert report["oldest_scan"] == oldest.isoformat(timespec="seconds") + "Z"
    assert report["newest_scan"] == newest.isoformat(timespec="seconds") + "Z"

    listed = dkm("database", "list")
    assert listed.returncode == 0, listed.stderr
    rows = dict(line.split() for line in listed.stdout.splitlines()[1:])
    assert rows["tasks"] == "1" and rows["scans"] == "3" and rows["user_stats"] == "6"
    assert rows["notifications"] == "3" and rows["actions"] == "3"
    assert rows["alembic_version"] == "1"


def test_status_shows_pending_migrations_of_an_empty_database(dkm):
    url = url_of(dkm)
    db = open_database(url, migrate=False)  # connects (creates the SQLite file), no schema
    db.dispose()
    result = dkm("database", "status")
    assert result.returncode == 0, result.stderr
    assert "revision:  none" in result.stdout
    assert "pending:   0001" in result.stdout and head_revision() in result.stdout


# ---------------------------------------------------------------- clean


def test_clean_removes_old_scan_history_only(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    result = dkm("database", "clean", "30")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "removed rows older than 30 days: 1 scans, 2 user_stats"
    assert table_rows(url) == {
        "tasks": 1,
        "scans": 2,
        "user_stats": 4,
        "notifications": 3,  # the mail log and the journal are kept
        "actions": 3,
    }
    db = open_database(url)
    try:
        with db.session() as session:  # their link to the removed scan is cleared
            orphans = session.scalar(select(func.count(Action.id)).where(Action.scan_id.is_(None)))
            assert orphans == 1
    finally:
        db.dispose()


def test_clean_named_tables_and_all(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    result = dkm("database", "clean", "5", "--table", "notifications", "--table", "user_stats")
    assert result.returncode == 0, result.stderr
    rows = table_rows(url)
    assert rows["notifications"] == 1 and rows["user_stats"] == 2 and rows["scans"] == 3
    assert rows["actions"] == 3
    result = dkm("database", "clean", "5", "--all")
    assert result.returncode == 0, result.stderr
    # the task was scanned a day ago: not abandoned, kept
    assert table_rows(url) == {
        "tasks": 1,
        "scans": 1,
        "user_stats": 2,
        "notifications": 1,
        "actions": 1,
    }
    assert dkm("database", "clean", "0", "--all").returncode == 0
    assert table_rows(url) == dict.fromkeys(
        ("tasks", "scans", "user_stats", "notifications", "actions"), 0
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (("clean", "ten"), "DAYS 'ten'"),
        (("clean", "-3"), "-3"),
        (("clean", "5", "--table", "bogus"), "--table 'bogus'"),
        (("clean", "5", "--table", "scans", "--all"), "exclusive"),
        (("clean",), "DAYS"),
        (("drop", "--yes"), "exactly one of --table T or --all"),
        (("drop", "--table", "scans", "--all", "--yes"), "exactly one"),
        (("drop", "--table", "bogus", "--yes"), "--table 'bogus'"),
        (("export",), "--format"),
        (("export", "--format", "xml"), "xml"),
        (("export", "--format", "csv", "--since", "yesterday"), "--since 'yesterday'"),
        (("frobnicate",), "frobnicate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(dkm_sqlite, args, words):
    line = one_line_error(dkm_sqlite("database", *args))
    assert words in line


# ---------------------------------------------------------------- drop


def test_drop_refuses_without_yes(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    for args in (("--all",), ("--table", "scans")):
        line = one_line_error(dkm("database", "drop", *args))
        assert "without --yes" in line
    assert table_rows(url)["scans"] == 3


def test_drop_table_empties_it_and_keeps_the_schema(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    result = dkm("database", "drop", "--table", "scans", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "removed all 3 row(s) of table scans"
    rows = table_rows(url)
    assert rows["scans"] == 0 and rows["user_stats"] == 0 and rows["actions"] == 3
    assert "pending:   none" in dkm("database", "status").stdout


def test_drop_all_then_upgrade_rebuilds(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    result = dkm("database", "drop", "--all", "--yes")
    assert result.returncode == 0, result.stderr
    assert "alembic_version" in result.stdout
    engine = open_database(url, migrate=False).engine
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    listed = dkm("database", "list")
    assert "no dkmonitor tables" in listed.stdout
    rebuilt = dkm("database", "upgrade")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert table_rows(url) == dict.fromkeys(
        ("tasks", "scans", "user_stats", "notifications", "actions"), 0
    )


@pytest.mark.postgres
def test_drop_all_leaves_other_tables_alone(dkm_factory, pg_url):
    from sqlalchemy import text

    from dkmonitor.db.engine import make_engine

    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id integer)"))
    dkm = dkm_factory(pg_url)
    assert dkm("database", "upgrade").returncode == 0
    assert dkm("database", "drop", "--all", "--yes").returncode == 0
    assert inspect(engine).get_table_names() == ["someone_elses"]
    engine.dispose()


# ---------------------------------------------------------------- export


def test_export_json_and_csv(dkm):
    url = url_of(dkm)
    assert dkm("database", "upgrade").returncode == 0
    seed(url)
    result = dkm("database", "export", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data) == 3 * 3  # each scan, then its two users
    assert all(list(item) == list(EXPORT_KEYS) for item in data)
    first, user_a, user_b = data[:3]
    assert first["username"] is None and first["uid"] is None and first["bytes"] == 2000
    assert user_a["run_id"] == first["run_id"] == user_b["run_id"]
    assert {user_a["username"], user_b["username"]} == {"user0", "user1"}
    assert first["scanned_at"].endswith("Z")
    times = [item["scanned_at"] for item in data]
    assert times == sorted(times)

    since = (NOW - timedelta(days=20)).date().isoformat()
    recent = json.loads(dkm("database", "export", "--format", "json", "--since", since).stdout)
    assert len(recent) == 6

    as_csv = dkm("database", "export", "--format", "csv", "--since", since)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == list(EXPORT_KEYS)
    assert len(rows) == 6
    assert rows[0]["username"] == "" and rows[1]["bytes"] == "1000"


def test_export_of_an_empty_history(dkm_sqlite):
    result = dkm_sqlite("database", "export", "--format", "json")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    result = dkm_sqlite("database", "export", "--format", "csv")
    assert result.stdout.splitlines() == [",".join(EXPORT_KEYS)]


# ---------------------------------------------------------------- purge (library)


def test_purge_history_limits_to_a_host(database):
    with database.session() as session:
        for host in ("h1", "h2"):
            for days in (1, 40):
                store_scan(session, record(days, host=host))
    with database.session() as session:
        assert purge_history(session, 30, hostname="h1") == 1
    with database.session() as session:
        left = session.execute(select(Scan.hostname, Scan.started_at)).all()
        assert sorted(h for h, _ in left) == ["h1", "h2", "h2"]
        assert session.scalar(select(func.count(UserStat.id))) == 3 * 2
        assert purge_history(session, 30) == 1


def test_full_run_purges_this_hosts_old_history(dkm_factory, db_url, tmp_path):
    dkm = dkm_factory(db_url)
    dkm.config.write_text(
        dkm.config.read_text()
        .replace("[general]\n", "[general]\nhostname = h1\n", 1)
        .replace("[database]\n", "[database]\npurge_after_days = 30\n", 1)
    )
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("x")
    created = dkm(
        "task", "create", "scratch", "--target", str(target),
        "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    db = open_database(db_url)
    try:
        with db.session() as session:
            for host, days in (("h1", 40), ("h1", 10), ("h2", 40)):
                store_scan(session, record(days, host=host))
    finally:
        db.dispose()
    assert dkm("run", "quick").returncode == 0  # a quick run purges nothing
    assert table_rows(db_url)["scans"] == 4
    assert dkm("run", "full", "--dry-run").returncode == 0  # nor does a dry run
    assert table_rows(db_url)["scans"] == 4
    run = dkm("run", "full")
    assert run.returncode == 0, run.stderr
    db = open_database(db_url)
    try:
        with db.session() as session:
            left = sorted(
                (host, round((NOW - started).days))
                for host, started in session.execute(select(Scan.hostname, Scan.started_at))
            )
    finally:
        db.dispose()
    assert [host for host, _ in left] == ["h1", "h1", "h1", "h2"]  # h1's 40-day scan is gone
    assert max(days for host, days in left if host == "h1") == 10
    assert (
        "purged 1 scan(s) of h1 older than 30 days"
        in (dkm.state_dir / "log" / "dkmonitor.log").read_text()
    )


def test_clean_tables_forgets_abandoned_tasks(database):
    with database.session() as session:
        for name in ("active", "abandoned"):
            create_task(
                session,
                TaskSpec(
                    name=name,
                    hostname="h1",
                    target_path=f"/{name}",
                    usage_warning_threshold=80,
                    usage_critical_threshold=90,
                    old_file_threshold=30,
                ),
            )
        store_scan(session, record(1, task="active"))
    later = NOW + timedelta(days=100)
    with database.session() as session:
        removed = clean_tables(session, 50, ("tasks",), now=later)
        assert removed == {"tasks": 2}  # neither was scanned or changed in the last 50 days
    with database.session() as session:
        create_task(
            session,
            TaskSpec(
                name="fresh",
                hostname="h1",
                target_path="/fresh",
                usage_warning_threshold=80,
                usage_critical_threshold=90,
                old_file_threshold=30,
            ),
        )
        assert clean_tables(session, 50, ("tasks",)) == {"tasks": 0}
