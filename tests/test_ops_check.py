"""`dkmonitor check`: each Nagios state from real scan history, and the rules themselves."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from dkmonitor.db.engine import open_database
from dkmonitor.db.models import Task, utcnow
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.db.tasks import create_task
from dkmonitor.health import CRITICAL, OK, UNKNOWN, WARNING, TaskFacts, evaluate
from dkmonitor.taskrun import UserUsageRow
from dkmonitor.taskspec import TaskSpec


def add_task(url: str, name: str, host: str, target: str = "/scratch", *, created_hours=100.0):
    db = open_database(url)
    try:
        with db.session() as session:
            create_task(
                session,
                TaskSpec(
                    name=name,
                    hostname=host,
                    target_path=target,
                    usage_warning_threshold=80,
                    usage_critical_threshold=90,
                    old_file_threshold=30,
                ),
            )
            session.execute(
                update(Task)
                .where(Task.name == name)
                .values(created_at=utcnow() - timedelta(hours=created_hours))
            )
    finally:
        db.dispose()


def add_scan(
    url: str,
    task: str,
    host: str,
    *,
    hours_ago: float,
    percent: float | None = 50.0,
    kind: str = "full",
    status: str = "ok",
    message: str | None = None,
) -> None:
    started = utcnow() - timedelta(hours=hours_ago)
    users = (UserUsageRow(1001, "alice", 3, 300, 4096, 1, 100, 12.0),) if kind == "full" else ()
    record = ScanRecord(
        run_id=str(uuid.uuid4()),
        task_name=task,
        hostname=host,
        target_path="/scratch",
        kind=kind,
        status=status,
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        disk_total=1000,
        disk_used=int(percent * 10) if percent is not None else None,
        disk_available=1000 - int(percent * 10) if percent is not None else None,
        disk_use_percent=percent if status == "ok" else None,
        files=3 if kind == "full" else None,
        bytes=300 if kind == "full" else None,
        message=message,
        users=users,
    )
    db = open_database(url)
    try:
        with db.session() as session:
            store_scan(session, record)
    finally:
        db.dispose()


def check(dkm, *args: str):
    result = dkm("check", *args)
    assert result.stderr == "", result.stderr
    return result


def first_line(result) -> str:
    return result.stdout.splitlines()[0]


# ---------------------------------------------------------------- the four states


def test_ok_from_fresh_history(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_task(url, "home", "h2")
    add_scan(url, "scratch", "h1", hours_ago=30, percent=40)
    add_scan(url, "scratch", "h1", hours_ago=2, percent=55.5)
    add_scan(url, "home", "h2", hours_ago=3, percent=10)
    add_scan(url, "home", "h2", hours_ago=0.5, percent=12, kind="quick")
    result = check(dkm)
    assert result.returncode == OK, result.stdout
    line = first_line(result)
    assert line.startswith("DKMONITOR OK - 2 task(s) on 2 host(s)")
    perf = line.split(" | ", 1)[1].split()
    assert "scratch@h1=55.5%;80;90;0;100" in perf
    assert "home@h2=12%;80;90;0;100" in perf  # the latest reading, a quick one
    assert "critical=0;;;0" in perf


def test_warning_disk_over_warning_threshold(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_scan(url, "scratch", "h1", hours_ago=1, percent=85.0)
    result = check(dkm)
    assert result.returncode == WARNING, result.stdout
    assert first_line(result).startswith(
        "DKMONITOR WARNING - 1 warning: task scratch on h1: disk 85.0% > warning 80%"
    )


def test_warning_full_scan_overdue_while_host_reports(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_scan(url, "scratch", "h1", hours_ago=50, percent=20)
    add_scan(url, "scratch", "h1", hours_ago=1, percent=20, kind="quick")
    result = check(dkm, "--max-age", "26")
    assert result.returncode == WARNING, result.stdout
    assert "task scratch on h1: last successful full scan 50.0 h ago (max 26 h)" in result.stdout
    # a longer allowance makes it fine
    assert check(dkm, "--max-age", "72").returncode == OK


def test_critical_disk_over_critical_threshold(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_task(url, "home", "h1")
    add_scan(url, "scratch", "h1", hours_ago=1, percent=90.5)
    add_scan(url, "home", "h1", hours_ago=1, percent=85)
    result = check(dkm)
    assert result.returncode == CRITICAL, result.stdout
    line = first_line(result)
    assert line.startswith("DKMONITOR CRITICAL - 1 critical, 1 warning: ")
    # the worst problem comes first; each problem also has its own line
    assert line.index("disk 90.5% > critical 90%") < line.index("disk 85.0% > warning 80%")
    assert "task scratch on h1: disk 90.5% > critical 90%" in result.stdout.splitlines()[1:]


def test_critical_host_stopped_reporting(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_task(url, "home", "h2")
    add_scan(url, "scratch", "h1", hours_ago=1, percent=10)
    add_scan(url, "home", "h2", hours_ago=40, percent=10)
    result = check(dkm)
    assert result.returncode == CRITICAL, result.stdout
    assert "host h2: no scan for 40.0 h (max 26 h)" in first_line(result)
    assert "stale_hosts=1;;;0" in first_line(result)
    # reported once for the host, not again for each of its tasks
    assert "task home" not in result.stdout


def test_critical_last_run_failed(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_scan(url, "scratch", "h1", hours_ago=5, percent=10)
    add_scan(
        url, "scratch", "h1", hours_ago=1, status="failed", message="target /scratch does not exist"
    )
    result = check(dkm)
    assert result.returncode == CRITICAL, result.stdout
    assert "task scratch on h1: last run failed: target /scratch does not exist" in result.stdout


def test_unknown_without_any_data(dkm):
    assert dkm("database", "upgrade").returncode == 0
    result = check(dkm)
    assert result.returncode == UNKNOWN
    assert first_line(result).startswith("DKMONITOR UNKNOWN - no enabled tasks")
    add_task(_url(dkm), "scratch", "h1")
    result = check(dkm)
    assert result.returncode == UNKNOWN
    assert "no scans stored yet for 1 task(s)" in first_line(result)


def test_unknown_when_sqlite_database_does_not_exist(dkm_sqlite):
    result = check(dkm_sqlite)
    assert result.returncode == UNKNOWN
    assert "does not exist yet" in first_line(result)
    assert not (dkm_sqlite.state_dir / "dkmonitor.db").exists()  # check never creates it


@pytest.mark.postgres
def test_unknown_when_database_unreachable(dkm_factory, pg_url):
    dead = make_url(pg_url).set(port=1, database="nowhere").render_as_string(hide_password=False)
    dkm = dkm_factory(dead)
    result = check(dkm)
    assert result.returncode == UNKNOWN
    assert first_line(result).startswith("DKMONITOR UNKNOWN - database ")
    assert len(result.stdout.splitlines()) == 1


def test_usage_errors_are_unknown_not_critical(dkm_sqlite):
    for args in (("--max-age", "soon"), ("--max-age", "-3"), ("--bogus",), ("--format", "xml")):
        result = dkm_sqlite("check", *args)
        assert result.returncode == UNKNOWN, (args, result)
        assert result.stdout.startswith("DKMONITOR UNKNOWN - "), result.stdout
        assert "Traceback" not in result.stdout + result.stderr


def test_bad_settings_file_is_unknown(dkm_sqlite):
    dkm_sqlite.config.write_text("[database]\nurl = nonsense://\n")
    result = dkm_sqlite("check")
    assert result.returncode == UNKNOWN
    assert "[database] url" in result.stdout


def test_json_format(dkm):
    url = _url(dkm)
    add_task(url, "scratch", "h1")
    add_scan(url, "scratch", "h1", hours_ago=1, percent=95)
    result = check(dkm, "--format", "json")
    assert result.returncode == CRITICAL
    data = json.loads(result.stdout)
    assert data["status"] == "CRITICAL" and data["exit_code"] == 2
    assert data["problems"] == [
        {
            "status": "CRITICAL",
            "kind": "disk",
            "task": "scratch",
            "hostname": "h1",
            "message": "task scratch on h1: disk 95.0% > critical 90%",
        }
    ]
    perf = {p["label"]: p for p in data["perfdata"]}
    assert perf["scratch@h1"]["value"] == 95 and perf["scratch@h1"]["crit"] == 90


def test_states_from_real_runs(dkm, tmp_path):
    """A real `run full`, then check with thresholds around the real disk use."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "file").write_text("data")
    created = dkm(
        "task", "create", "real", "--target", str(target),
        "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert dkm("run", "full").returncode == 0
    result = check(dkm)
    assert result.returncode == OK, result.stdout
    edited = dkm("task", "edit", "real", "--warning", "0.001", "--critical", "99.9")
    assert edited.returncode == 0, edited.stderr
    assert check(dkm).returncode == WARNING
    target.rename(tmp_path / "gone")
    assert dkm("run", "full").returncode == 1
    result = check(dkm)
    assert result.returncode == CRITICAL
    assert "last run failed" in result.stdout


# ---------------------------------------------------------------- the rules


NOW = datetime(2024, 5, 1, 12, 0)


def facts(**changes) -> TaskFacts:
    values = dict(
        name="t",
        hostname="h",
        warning=80.0,
        critical=90.0,
        created_at=NOW - timedelta(days=10),
        disk_use_percent=50.0,
        disk_read_at=NOW - timedelta(hours=1),
        last_full_ok=NOW - timedelta(hours=1),
        last_status="ok",
    )
    values.update(changes)
    return TaskFacts(**values)


def test_thresholds_are_strictly_greater():
    seen = {"h": NOW - timedelta(hours=1)}
    assert evaluate([facts(disk_use_percent=80.0)], seen, NOW).state == OK
    assert evaluate([facts(disk_use_percent=80.01)], seen, NOW).state == WARNING
    assert evaluate([facts(disk_use_percent=90.0)], seen, NOW).state == WARNING
    assert evaluate([facts(disk_use_percent=90.01)], seen, NOW).state == CRITICAL


def test_new_task_is_not_stale_yet():
    young = facts(created_at=NOW - timedelta(hours=2), last_full_ok=None, disk_use_percent=None)
    old = facts(name="u", last_full_ok=None, disk_use_percent=None, last_status=None)
    seen = {"h": NOW - timedelta(hours=1)}
    assert evaluate([young], seen, NOW).state == OK
    verdict = evaluate([young, old], seen, NOW)
    assert verdict.state == WARNING
    assert [p.message for p in verdict.problems] == [
        "task u on h: never had a successful full scan"
    ]


def test_host_that_never_reported():
    verdict = evaluate(
        [facts(), facts(name="u", hostname="quiet", last_status=None, last_full_ok=None)],
        {"h": NOW - timedelta(hours=1)},
        NOW,
    )
    assert verdict.state == CRITICAL
    assert [p.message for p in verdict.problems] == ["host quiet: never reported"]


def test_perf_labels_with_spaces_are_quoted():
    verdict = evaluate([facts(name="my task")], {"h": NOW}, NOW)
    assert "'my task@h'=50%;80;90;0;100" in verdict.status_line()


def _url(dkm) -> str:
    text = dkm.config.read_text()
    return text.split("url = ", 1)[1].splitlines()[0]
