"""`dkmonitor run full` mailing users over a real SMTP server, end to end.

A tree with a top user by space, an owner of old files, a tidy user and an
owner with no passwd entry; the task's warning threshold is tiny so any disk
is "over" it, and the critical one is 100% so nothing is ever cleaned.
"""

from __future__ import annotations

import os
import pwd
import socket
import time

import pytest
from sqlalchemy import select

from dkmonitor.db.engine import open_database
from dkmonitor.db.models import Notification
from tests.fixtures.notify import age_log, log_rows

DAY = 86400
BIG = pwd.getpwnam("bin")  # top by space
OLD = pwd.getpwnam("daemon")  # top by old bytes
TIDY = pwd.getpwnam("sys")  # nothing to fix
GHOST = 54_322  # old files, no passwd entry


def mail_settings(port: int) -> str:
    """The [email] section for the test SMTP server on ``port``."""
    return (
        "[email]\nenabled = yes\nsmtp_host = 127.0.0.1\n"
        f"smtp_port = {port}\nsmtp_timeout = 10\n"
        "from_address = dkmonitor@example.edu\nuser_postfix = example.edu\n"
    )


def make_target(tmp_path):
    """The standard tree (see the module docstring) under ``tmp_path/scratch``."""
    root = tmp_path / "scratch"
    root.mkdir()
    now = time.time()
    for name, uid, size, age_days in [
        ("big.dat", BIG.pw_uid, 900_000, 1),
        ("old.dat", OLD.pw_uid, 300_000, 200),
        ("old2.dat", OLD.pw_uid, 7_000, 150),
        ("tidy.dat", TIDY.pw_uid, 10_000, 2),
        ("ghost.dat", GHOST, 5_000, 400),
    ]:
        path = root / name
        path.write_bytes(b"x" * size)
        os.chown(path, uid, 0)
        os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return root


@pytest.fixture
def target(tmp_path):
    return make_target(tmp_path)


@pytest.fixture
def mailing(dkm_factory, db_url, smtp_server, target):
    dkm = dkm_factory(db_url, mail_settings(smtp_server.port))
    created = dkm(
        "task",
        "create",
        "scratch",
        "--target",
        str(target),
        "--warning",
        "0.001",
        "--critical",
        "100",
        "--old-days",
        "90",
        "--email-warnings",
    )
    assert created.returncode == 0, created.stderr
    return dkm


def test_run_full_mails_flagged_users_once_per_interval(mailing, smtp_server, db_url):
    result = mailing("run", "full")
    assert result.returncode == 0, result.stderr

    mails = smtp_server.by_recipient()
    assert set(mails) == {"bin@example.edu", "daemon@example.edu"}
    old = " ".join(mails["daemon@example.edu"].message.get_content().split())
    assert "2 of your files, 300 KiB in all" in old  # 307000 bytes
    big = " ".join(mails["bin@example.edu"].message.get_content().split())
    assert "Your 1 files take 879 KiB" in big

    again = mailing("run", "full")
    assert again.returncode == 0 and len(smtp_server.received) == 2

    database = open_database(db_url)
    try:
        age_log(database, 25)
    finally:
        database.dispose()
    later = mailing("run", "full")
    assert later.returncode == 0 and len(smtp_server.received) == 4


def test_refusing_server_exits_1_keeps_the_scan_and_next_run_delivers(mailing, smtp_server, db_url):
    smtp_server.refuse = "550 5.7.1 relaying denied"
    result = mailing("run", "full")
    assert result.returncode == 1
    assert "550 5.7.1 relaying denied" in result.stderr
    assert smtp_server.received == []

    views = mailing("view", "system", socket.gethostname(), "--format", "json")
    assert views.returncode == 0 and '"task": "scratch"' in views.stdout

    database = open_database(db_url)
    try:
        rows = log_rows(database)
    finally:
        database.dispose()
    assert len(rows) == 2 and all(not r.delivered and "550" in r.error for r in rows)

    smtp_server.refuse = None
    retry = mailing("run", "full")
    assert retry.returncode == 0, retry.stderr
    assert set(smtp_server.by_recipient()) == {"bin@example.edu", "daemon@example.edu"}


def test_move_notice_after_cleaning_and_its_retry(
    dkm_factory, sqlite_url, smtp_server, target, tmp_path
):
    archive = tmp_path / "archive"
    archive.mkdir()
    dkm = dkm_factory(
        sqlite_url,
        mail_settings(smtp_server.port),
    )
    created = dkm(
        "task",
        "create",
        "scratch",
        "--target",
        str(target),
        "--warning",
        "0.001",
        "--critical",
        "0.002",
        "--old-days",
        "90",
        "--move-to",
        str(archive),
    )
    assert created.returncode == 0, created.stderr

    smtp_server.refuse = "451 4.3.0 try again later"
    first = dkm("run", "full")
    assert first.returncode == 1
    assert (archive / socket.gethostname()).is_dir()  # cleaning happened regardless

    smtp_server.refuse = None
    second = dkm("run", "full")  # nothing old is left to move: only the retry goes out
    assert second.returncode == 0, second.stderr
    mails = smtp_server.by_recipient()
    assert set(mails) == {"daemon@example.edu"}
    notice = mails["daemon@example.edu"].message
    assert " ".join(str(notice["Subject"]).split()).startswith("[dkmonitor] 2 old files moved")
    body = " ".join(notice.get_content().split())
    assert "2 of your files, 300 KiB in all" in body
    assert f"{archive}/{socket.gethostname()}{target}" in body

    assert dkm("run", "full").returncode == 0
    assert len(smtp_server.received) == 1


def test_missing_target_mails_the_administrators(
    dkm_factory, sqlite_url, smtp_server, target, tmp_path
):
    """DESIGN.md: a missing target fails its task (exit 1) and the administrators are mailed."""
    admins = "admin_addresses = root@example.edu, storage@example.edu\n"
    dkm = dkm_factory(sqlite_url, mail_settings(smtp_server.port) + admins)
    gone = tmp_path / "unmounted"
    for name, path in (("gone", gone), ("scratch", target)):
        created = dkm(
            "task",
            "create",
            name,
            "--target",
            str(path),
            "--warning",
            "0.001",
            "--critical",
            "100",
            "--old-days",
            "90",
            "--email-warnings",
        )
        assert created.returncode == 0, created.stderr
    result = dkm("run", "full")
    assert result.returncode == 1
    assert f"task gone: target {gone} does not exist" in result.stderr
    (admin,) = [m for m in smtp_server.received if "root@example.edu" in m.rcpt_tos]
    assert set(admin.rcpt_tos) == {"root@example.edu", "storage@example.edu"}
    body = admin.message.get_content()
    assert f"task gone: target {gone} does not exist" in body
    assert str(GHOST) in body  # owners who could not be mailed are listed
    # the other task still ran and mailed its users
    assert any(f"{OLD.pw_name}@example.edu" in m.rcpt_tos for m in smtp_server.received)
    # and the summary is in the mail log like every other mail
    database = open_database(sqlite_url)
    try:
        with database.session() as session:
            (logged,) = session.scalars(
                select(Notification).where(Notification.kind == "admin")).all()
            assert (logged.task_name, logged.delivered, logged.error) == ("*", True, None)
            assert logged.address == "root@example.edu, storage@example.edu"
            assert logged.body == body and logged.subject == admin.message["Subject"]
    finally:
        database.dispose()
