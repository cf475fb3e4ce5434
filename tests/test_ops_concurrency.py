"""Many hosts, one PostgreSQL: concurrent runs, concurrent upgrades, overlapping runs.

Each "host" is its own settings file (``[general] hostname = hN``) and state
directory, all pointing at the same database, each run a separate process
started at once.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dkmonitor.db.engine import open_database
from dkmonitor.db.migrate import head_revision
from dkmonitor.db.models import Scan, UserStat, utcnow
from dkmonitor.db.spool import spool_record
from dkmonitor.db.store import ScanRecord
from dkmonitor.lock import task_lock
from tests.fixtures.cli import DKMONITOR


def start(dkm, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [DKMONITOR, "--config", str(dkm.config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **dkm.env},
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def make_tree(root, users: int, files_per_user: int) -> None:
    root.mkdir()
    for uid in range(users):
        directory = root / f"u{uid}"
        directory.mkdir()
        for index in range(files_per_user):
            path = directory / f"f{index}"
            path.write_bytes(b"x" * (index + 1))
            os.chown(path, 2000 + uid, 2000 + uid)


@pytest.mark.postgres
@pytest.mark.root
def test_four_hosts_run_full_at_once_and_every_row_is_stored(dkm_factory, pg_url, tmp_path):
    hosts = []
    for number in range(4):
        host = f"h{number}"
        dkm = dkm_factory(pg_url)
        dkm.config.write_text(
            dkm.config.read_text().replace("[general]\n", f"[general]\nhostname = {host}\n", 1)
        )
        target = tmp_path / f"target{number}"
        make_tree(target, users=number + 2, files_per_user=50)
        hosts.append((host, dkm, target))
    for host, dkm, target in hosts:  # tasks exist before the runs (and migrate the DB)
        created = dkm(
            "task", "create", f"scratch-{host}", "--target", str(target),
            "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr

    runs = [start(dkm, "run", "full") for _host, dkm, _target in hosts]
    results = [finish(run) for run in runs]
    for code, out, err in results:
        assert code == 0, err
        assert out == ""  # no terminal: nothing on stdout

    db = open_database(pg_url)
    try:
        with db.session() as session:
            per_host = dict(
                session.execute(
                    select(Scan.hostname, func.count(Scan.id)).group_by(Scan.hostname)
                ).all()
            )
            users = session.scalar(select(func.count(UserStat.id)))
            files = dict(session.execute(select(Scan.task_name, Scan.files)).all())
    finally:
        db.dispose()
    assert per_host == {"h0": 1, "h1": 1, "h2": 1, "h3": 1}
    assert users == 2 + 3 + 4 + 5
    assert files == {f"scratch-h{n}": 50 * (n + 2) for n in range(4)}


@pytest.mark.postgres
def test_two_processes_upgrading_a_fresh_database_both_succeed(dkm_factory, pg_url):
    installs = [dkm_factory(pg_url) for _ in range(4)]
    results = [finish(p) for p in [start(dkm, "database", "upgrade") for dkm in installs]]
    for code, out, err in results:
        assert code == 0, err
        assert out.strip().endswith(f"schema at revision {head_revision()}")
    status = installs[0]("database", "status")
    assert "pending:   none" in status.stdout


def test_overlapping_run_of_one_task_skips_with_a_clear_line(dkm, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("x")
    created = dkm(
        "task", "create", "scratch", "--target", str(target),
        "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with task_lock(dkm.state_dir, "scratch"):  # the lock a running `run full` holds
        second = dkm("run", "full", "scratch")
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1
    assert "task scratch: already running" in lines[0] and "skipped" in lines[0]

    url = dkm.config.read_text().split("url = ", 1)[1].splitlines()[0]
    db = open_database(url)
    try:
        with db.session() as session:
            assert session.scalar(select(func.count(Scan.id))) == 0  # it did not scan
    finally:
        db.dispose()
    # the lock is gone with its holder: the next run scans
    assert dkm("run", "full", "scratch").returncode == 0


@pytest.mark.postgres
def test_concurrent_spool_replays_store_each_run_once(dkm_factory, pg_url):
    dkm = dkm_factory(pg_url)
    assert dkm("database", "upgrade").returncode == 0
    for minute in range(200):
        started = utcnow() - timedelta(minutes=minute)
        spool_record(
            dkm.state_dir,
            ScanRecord(
                run_id=str(uuid.uuid4()),
                task_name="x",
                hostname="h",
                target_path="/x",
                kind="quick",
                status="ok",
                started_at=started,
                finished_at=started,
            ),
        )
    results = [finish(p) for p in [start(dkm, "database", "flush-spool") for _ in range(3)]]
    for code, _out, err in results:
        assert code == 0, err
    db = open_database(pg_url)
    try:
        with db.session() as session:
            assert session.scalar(select(func.count(Scan.id))) == 200
    finally:
        db.dispose()
