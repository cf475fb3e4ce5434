"""`check --notify`: the administrators hear of each health change once, over real SMTP.

History is written straight into the database (tests.test_ops_check's
helpers); `dkmonitor check --notify` runs as cron would run it. The "day"
of the reminder rule is passed by ageing the state file, not by waiting.
"""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta

from dkmonitor.crontab import cron_lines, merge
from tests.test_notify_run import mail_settings
from tests.test_ops_check import add_scan, add_task

ADMINS = "admin_addresses = root@example.edu\n"


def subjects(server) -> list[str]:
    return [" ".join(str(item.message["Subject"]).split()) for item in server.received]


def age_state(state_file, hours: float) -> None:
    data = json.loads(state_file.read_text())
    data["at"] = (datetime.fromisoformat(data["at"]) - timedelta(hours=hours)).isoformat()
    state_file.write_text(json.dumps(data))


def test_state_changes_are_mailed_once_and_recovery_too(dkm_factory, db_url, smtp_server):
    dkm = dkm_factory(db_url, mail_settings(smtp_server.port) + ADMINS)
    add_task(db_url, "scratch", "node1")
    add_scan(db_url, "scratch", "node1", hours_ago=1)
    state_file = dkm.state_dir / "health-notify.json"

    first = dkm("check", "--notify")
    assert first.returncode == 0, first.stdout + first.stderr
    assert smtp_server.received == []  # OK from the start: nothing to say
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600

    add_task(db_url, "proj", "node2")  # a second host, whose last scan is 30 h old
    add_scan(db_url, "proj", "node2", hours_ago=30)
    down = dkm("check", "--notify")
    assert down.returncode == 2, down.stdout
    assert subjects(smtp_server) == ["[dkmonitor] health CRITICAL (was OK)"]
    mail = smtp_server.received[0]
    assert mail.rcpt_tos == ("root@example.edu",)
    assert "node2" in mail.message.get_content()

    assert dkm("check", "--notify").returncode == 2
    assert len(smtp_server.received) == 1  # unchanged: not again within the day

    age_state(state_file, 25)
    assert dkm("check", "--notify").returncode == 2
    assert subjects(smtp_server)[1:] == ["[dkmonitor] health still CRITICAL"]

    add_scan(db_url, "proj", "node2", hours_ago=0.5)  # node2 reports again
    back = dkm("check", "--notify")
    assert back.returncode == 0, back.stdout
    assert subjects(smtp_server)[2:] == ["[dkmonitor] health OK again (was CRITICAL)"]
    body = smtp_server.received[2].message.get_content()
    assert "Cleared since the last mail" in body and "stale-host node2" in body

    age_state(state_file, 25)
    assert dkm("check", "--notify").returncode == 0
    assert len(smtp_server.received) == 3  # OK stays OK: no reminder


def test_a_failed_mail_is_tried_again_by_the_next_check(dkm_factory, db_url, smtp_server):
    dkm = dkm_factory(db_url, mail_settings(smtp_server.port) + ADMINS)
    add_task(db_url, "scratch", "node1")
    add_scan(db_url, "scratch", "node1", hours_ago=1, percent=95)  # over critical (90)
    smtp_server.refuse = "451 4.3.0 try again later"
    refused = dkm("check", "--notify")
    assert refused.returncode == 2  # the verdict's status, whatever the mail did
    assert "health mail to root@example.edu not delivered" in refused.stderr
    assert "451" in refused.stderr
    smtp_server.refuse = None
    assert dkm("check", "--notify").returncode == 2
    assert subjects(smtp_server) == ["[dkmonitor] health CRITICAL"]


def test_notify_without_mail_settings_is_unknown(dkm_factory, sqlite_url):
    dkm = dkm_factory(sqlite_url)
    result = dkm("check", "--notify")
    assert result.returncode == 3
    assert result.stdout.startswith("DKMONITOR UNKNOWN - check --notify mails")
    assert "Traceback" not in result.stderr


def test_cron_offers_the_check_line_on_request(dkm_factory, sqlite_url):
    dkm = dkm_factory(sqlite_url)
    plain = dkm("cron")
    assert plain.returncode == 0 and "check --notify" not in plain.stdout
    asked = dkm("cron", "--check-notify")
    assert asked.returncode == 0, asked.stderr
    (line,) = [text for text in asked.stdout.splitlines() if "check --notify" in text]
    assert line.split()[1:5] == ["*", "*", "*", "*"]

    lines = cron_lines(["/usr/bin/dkmonitor"], None, "node1", check_notify=True)
    text, result = merge("", lines)
    assert len(result.added) == 3
    again, second = merge(text, lines)
    assert second.added == () and len(second.present) == 3 and again == text
