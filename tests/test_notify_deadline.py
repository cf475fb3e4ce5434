"""A slow mail server cannot hang a run: each message has an overall deadline.

The tarpit answers every read well within ``smtp_timeout`` (a ``220-`` line
every 0.2 s) but never finishes its greeting; only ``smtp_deadline`` ends
the wait. The send runs in a thread joined with a generous bound, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import ssl
import threading
from email.message import EmailMessage

import pytest

from dkmonitor.db.engine import open_database
from dkmonitor.notify.mailer import DeliveryError, SmtpMailer
from tests.fixtures.notify import log_rows, make_settings
from tests.fixtures.smtp import Tarpit
from tests.test_notify_run import mail_settings, make_target


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "dkmonitor@example.edu"
    message["To"] = "ann@example.edu"
    message["Subject"] = "hello"
    message.set_content("hello")
    return message


def test_tarpit_greeting_ends_at_the_deadline(tmp_path, tarpit_smtp: Tarpit):
    settings = make_settings(
        tmp_path, smtp_port=tarpit_smtp.port, smtp_timeout=30, smtp_deadline=1
    )
    failures: list[DeliveryError] = []

    def send() -> None:
        with SmtpMailer(settings.email) as mailer:
            try:
                mailer.send(_message())
            except DeliveryError as exc:
                failures.append(exc)
            try:  # the server is now known dead: the next message fails at once
                mailer.send(_message())
            except DeliveryError as exc:
                failures.append(exc)

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "send() still waiting on the tarpit after 60 s"
    first, second = failures
    assert first.connection and first.attempted
    assert "deadline" in first.reason and f"127.0.0.1:{tarpit_smtp.port}" in first.reason
    assert not second.attempted
    assert tarpit_smtp.accepted == 1


def test_tls_tarpit_ends_at_the_deadline(tmp_path, tarpit_factory, tls_certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_certificate.cert, tls_certificate.key)
    tarpit = tarpit_factory(tls=context)
    settings = make_settings(tmp_path, smtp_port=tarpit.port, smtp_timeout=30,
                             smtp_deadline=1, smtp_ssl="yes",
                             smtp_ca_file=tls_certificate.cert)
    failures: list[DeliveryError] = []

    def send() -> None:
        with SmtpMailer(settings.email) as mailer:
            try:
                mailer.send(_message())
            except DeliveryError as exc:
                failures.append(exc)

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "send() still waiting on the TLS tarpit after 60 s"
    (failure,) = failures
    assert "deadline" in failure.reason, failure.reason


def test_deadline_setting_is_bounded(tmp_path):
    from dkmonitor.errors import ConfigError

    for bad in ("0", "-1", "nan", "inf", "3601", "1e308"):
        with pytest.raises(ConfigError, match="smtp_deadline"):
            make_settings(tmp_path, smtp_deadline=bad)
    assert make_settings(tmp_path).email.smtp_deadline == 120


def test_run_against_a_tarpit_ends_records_and_retries(
    dkm_factory, db_url, tarpit_smtp: Tarpit, smtp_server, tmp_path
):
    root = make_target(tmp_path)
    dkm = dkm_factory(db_url, mail_settings(tarpit_smtp.port) + "smtp_deadline = 1\n")
    created = dkm("task", "create", "scratch", "--target", str(root), "--warning", "0.001",
                  "--critical", "100", "--old-days", "90", "--email-warnings")
    assert created.returncode == 0, created.stderr

    result = dkm("run", "full")  # Dkm's subprocess timeout fails the test if it hangs
    assert result.returncode == 1
    assert "deadline" in result.stderr
    database = open_database(db_url)
    try:
        rows = log_rows(database)
    finally:
        database.dispose()
    assert {row.username for row in rows} == {"bin", "daemon"}
    assert all(not row.delivered and "deadline" in (row.error or "") for row in rows)

    # the failure is retried: the next run with a working server delivers both warnings
    dkm.write_config(dkm.config.read_text().replace(
        f"smtp_port = {tarpit_smtp.port}", f"smtp_port = {smtp_server.port}"))
    retry = dkm("run", "full")
    assert retry.returncode == 0, retry.stderr
    assert set(smtp_server.by_recipient()) == {"bin@example.edu", "daemon@example.edu"}
