"""The administrators' summary when the only news is owners with no passwd entry.

A clean run (nothing failed) over a tree that holds old files of a uid with
no passwd entry: the administrators hear of that uid, once per task per
notify_interval_hours (the mail log holds the summaries sent), over a real
SMTP server.
"""

from __future__ import annotations

import pytest

from dkmonitor.channels.base import AdminSummary, unmailed_line
from dkmonitor.db.engine import open_database
from dkmonitor.notify.admin import admin_step
from tests.fixtures.notify import HOSTNAME, age_log, make_settings
from tests.test_notify_run import GHOST, mail_settings, make_target

ADMINS = "admin_addresses = root@example.edu\n"


def admin_mails(server) -> list:
    return [item for item in server.received if "root@example.edu" in item.rcpt_tos]


def test_owners_without_passwd_alone_reach_the_admins_once_per_interval(
    mailing_admins, smtp_server, db_url
):
    first = mailing_admins("run", "full")
    assert first.returncode == 0, first.stderr  # nothing failed
    (summary,) = admin_mails(smtp_server)
    assert " ".join(str(summary.message["Subject"]).split()).endswith(
        ": owners not mailed (1 task)")
    body = summary.message.get_content()
    assert "task scratch: not mailed, no passwd entry: uid " + str(GHOST) in body

    assert mailing_admins("run", "full").returncode == 0
    assert len(admin_mails(smtp_server)) == 1  # within notify_interval_hours: not again

    database = open_database(db_url)
    try:
        age_log(database, 25)
    finally:
        database.dispose()
    assert mailing_admins("run", "full").returncode == 0
    assert len(admin_mails(smtp_server)) == 2


def test_failures_are_mailed_whatever_the_interval(database, tmp_path, smtp_server):
    settings = make_settings(tmp_path, smtp_port=smtp_server.port,
                             admin_addresses="root@example.edu")
    unmailed = {"scratch": unmailed_line("scratch") + "uid 4000123"}
    assert admin_step(database, settings, AdminSummary((), unmailed)) == []
    assert admin_step(database, settings, AdminSummary((), unmailed)) == []
    assert len(smtp_server.received) == 1
    failed = AdminSummary(("task scratch: target /scratch does not exist",), unmailed)
    assert admin_step(database, settings, failed) == []
    assert len(smtp_server.received) == 2
    body = smtp_server.received[1].message.get_content()
    assert "does not exist" in body and "uid 4000123" in body
    # another task's owners are news even within the interval
    other = {"home": unmailed_line("home") + "uid 4000124"}
    assert admin_step(database, settings, AdminSummary((), {**unmailed, **other})) == []
    (third,) = smtp_server.received[2:]
    assert "uid 4000124" in third.message.get_content()
    assert "task scratch:" not in third.message.get_content()
    assert HOSTNAME in str(third.message["Subject"])


@pytest.fixture
def mailing_admins(dkm_factory, db_url, smtp_server, tmp_path):
    target = make_target(tmp_path)
    dkm = dkm_factory(db_url, mail_settings(smtp_server.port) + ADMINS)
    created = dkm("task", "create", "scratch", "--target", str(target), "--warning", "0.001",
                  "--critical", "100", "--old-days", "90", "--email-warnings")
    assert created.returncode == 0, created.stderr
    return dkm
