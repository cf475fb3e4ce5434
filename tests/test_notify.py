"""notify_step and mail_admins against a real SMTP server and a real mail log."""

from __future__ import annotations

from dataclasses import replace
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from dkmonitor.errors import ConfigError
from dkmonitor.notify.admin import mail_admins
from dkmonitor.notify.step import check_templates, notify_step
from dkmonitor.taskrun import AlteredFiles, CleanSummary
from tests.fixtures.notify import (
    HOSTNAME,
    NO_PASSWD_UID,
    POSTFIX,
    GiB,
    age_log,
    log_rows,
    make_cast,
    make_run,
    make_settings,
    make_task,
    store_scan,
)


def address(user) -> str:
    return f"{user.username}@{POSTFIX}"


def words(received) -> str:
    """The body with line breaks and runs of spaces as single spaces."""
    return " ".join(received.message.get_content().split())


def unfolded(header) -> str:
    return " ".join(str(header).split())


@pytest.fixture
def settings(tmp_path, smtp_server):
    return make_settings(tmp_path, smtp_port=smtp_server.port)


# ------------------------------------------------------------------ warnings


def test_each_flagged_user_gets_one_mail_with_their_numbers(database, settings, smtp_server):
    cast = make_cast()
    task = make_task()
    run = make_run(task, scan_id=store_scan(database, task))

    report = notify_step(database, settings, run, None)

    assert report.ok, report.errors
    assert (report.sent, report.failed, report.suppressed) == (3, 0, 0)
    mails = smtp_server.by_recipient()
    assert set(mails) == {address(u) for u in cast.mailed}
    assert address(cast.tidy) not in mails

    top = mails[address(cast.top)]
    assert top.mail_from == "dkmonitor@example.edu"
    message = top.message
    assert message["From"] == "dkmonitor@example.edu"
    assert message["To"] == address(cast.top)
    assert unfolded(message["Subject"]) == f"[dkmonitor] usage warning: {HOSTNAME}:/scratch"
    assert message["Date"] and message["Message-ID"].endswith("@example.edu>")
    body = words(top)
    assert body.startswith(f"Dear {cast.top.username},")
    assert "improper use of /scratch on node7" in body
    assert "91.0% full" in body and "threshold of 80%" in body
    assert "Your 4000 files take 500 GiB, 50.0% of the file system" in body
    assert "old data" not in body and "MOVED" not in body

    old = words(mails[address(cast.old)])
    assert "top 20% of users by old data" in old
    assert "1200 of your files, 60.0 GiB in all" in old
    assert "more than 90 days" in old
    assert "MOVED to /archive/node7/scratch" in old
    assert "more than 95% full" in old
    assert "users by space" not in old

    some = words(mails[address(cast.some_old)])
    assert "You have 30 files on /scratch, 1.00 GiB in all" in some
    assert "MOVED" in some and "top 20%" not in some

    assert [p for p in report.no_passwd if str(NO_PASSWD_UID) in p]
    rows = log_rows(database)
    assert sorted(r.address for r in rows) == sorted(address(u) for u in cast.mailed)
    assert all(r.delivered and r.error is None and r.kind == "warning" for r in rows)
    assert all(r.scan_id == run.scan_id and r.task_name == "scratch" for r in rows)
    assert all(r.body for r in rows)


def test_no_mail_under_the_warning_threshold_or_when_warnings_are_off(
    database, settings, smtp_server
):
    assert notify_step(database, settings, make_run(percent_used=80), None).sent == 0
    quiet = make_task(email_usage_warnings=False)
    assert notify_step(database, settings, make_run(quiet), None).sent == 0
    assert smtp_server.received == [] and log_rows(database) == []


def test_mail_disabled_does_nothing(database, tmp_path, smtp_server):
    off = make_settings(tmp_path, enabled="no", smtp_port=smtp_server.port)
    report = notify_step(database, off, make_run(), None)
    assert (report.sent, report.failed, report.would_send) == (0, 0, [])
    assert smtp_server.received == []


def test_delete_task_warns_of_deletion(database, settings, smtp_server):
    task = make_task(relocation_path=None, delete_old_files=True)
    notify_step(database, settings, make_run(task), None)
    body = words(smtp_server.by_recipient()[address(make_cast().old)])
    assert "are DELETED, without a backup" in body and "MOVED" not in body


def test_alteration_warning_off(database, settings, smtp_server):
    task = make_task(email_data_alterations=False)
    notify_step(database, settings, make_run(task), None)
    for received in smtp_server.received:
        assert "MOVED" not in received.message.get_content()


# ------------------------------------------------------------------ interval


def test_same_warning_at_most_once_per_interval(database, settings, smtp_server):
    first = notify_step(database, settings, make_run(), None)
    assert first.sent == 3

    again = notify_step(database, settings, make_run(), None)
    assert (again.sent, again.suppressed) == (0, 3)
    assert len(smtp_server.received) == 3
    assert len(log_rows(database)) == 3

    age_log(database, 23)
    assert notify_step(database, settings, make_run(), None).sent == 0

    age_log(database, 2)  # now 25 hours ago
    later = notify_step(database, settings, make_run(), None)
    assert (later.sent, later.suppressed) == (3, 0)
    assert len(smtp_server.received) == 6


def test_interval_is_per_task(database, settings, smtp_server):
    notify_step(database, settings, make_run(), None)
    other = make_task(name="projects", target_path="/projects")
    assert notify_step(database, settings, make_run(other), None).sent == 3


# ------------------------------------------------------------------ failures


def test_refusing_server_records_failures_and_next_run_delivers(
    database, settings, refusing_smtp_server
):
    server = refusing_smtp_server
    report = notify_step(database, settings, make_run(), None)

    assert (report.sent, report.failed) == (0, 3)
    assert not report.ok
    assert report.summary().startswith("task scratch: 3 of 3 mails not delivered")
    assert len(report.errors) == 3 and all("550" in line for line in report.errors)
    rows = log_rows(database)
    assert len(rows) == 3
    assert all(not r.delivered and "550" in r.error for r in rows)
    assert server.received == []

    server.refuse = None  # the mail server is fixed
    retry = notify_step(database, settings, make_run(), None)
    assert (retry.sent, retry.failed, retry.suppressed) == (3, 0, 0)
    assert len(server.by_recipient()) == 3
    assert [r.delivered for r in log_rows(database)] == [False] * 3 + [True] * 3


def test_one_refused_recipient_does_not_stop_the_others(
    database, tmp_path, smtp_server
):
    cast = make_cast()
    # Through the address map, one user's address has a domain the server refuses.
    mapping = tmp_path / "addresses"
    mapping.write_text(f"# exceptions\n{cast.old.username} {cast.old.username}@refused.test\n")
    settings = make_settings(tmp_path, smtp_port=smtp_server.port, address_map=mapping)
    handler = smtp_server.handler
    original = handler.handle_RCPT

    async def picky(server, session, envelope, addr, options):
        if addr.endswith("@refused.test"):
            return "550 5.1.2 no such domain"
        return await original(server, session, envelope, addr, options)

    handler.handle_RCPT = picky
    report = notify_step(database, settings, make_run(), None)
    assert (report.sent, report.failed) == (2, 1)
    assert len(report.errors) == 1 and "refused.test" in report.errors[0]
    assert set(smtp_server.by_recipient()) == {address(cast.top), address(cast.some_old)}


def test_dead_server_fails_fast_and_records_every_mail(
    database, tmp_path, dead_smtp_port, monkeypatch
):
    from dkmonitor.notify import deadline

    connects = []
    real_connect = deadline.connect_socket

    def counting_connect(*args):
        connects.append(args)
        return real_connect(*args)

    monkeypatch.setattr(deadline, "connect_socket", counting_connect)
    settings = make_settings(tmp_path, smtp_port=dead_smtp_port)

    report = notify_step(database, settings, make_run(), None)

    assert len(connects) == 1  # one connection attempt, not one per user
    assert (report.sent, report.failed) == (0, 3)
    assert len(report.errors) == 2
    assert f"127.0.0.1:{dead_smtp_port}" in report.errors[0]
    assert "2 more mails not attempted" in report.errors[1]
    rows = log_rows(database)
    assert len(rows) == 3 and not any(r.delivered for r in rows)
    assert all(f"127.0.0.1:{dead_smtp_port}" in r.error for r in rows)


def test_without_database_notices_go_out_and_warnings_wait(settings, smtp_server):
    cast = make_cast()
    cleaned = CleanSummary(moved={cast.old.uid: AlteredFiles(5, 3 * GiB)})
    report = notify_step(None, settings, make_run(percent_used=96), cleaned)
    assert report.sent == 1
    assert list(smtp_server.by_recipient()) == [address(cast.old)]
    assert any("usage warnings wait" in note for note in report.notes)


# ------------------------------------------------------------------ notices


def test_notices_after_cleaning_carry_the_real_counts(database, settings, smtp_server):
    cast = make_cast()
    cleaned = CleanSummary(
        moved={cast.old.uid: AlteredFiles(1000, 50 * GiB), cast.tidy.uid: AlteredFiles(0, 0)}
    )
    report = notify_step(database, settings, make_run(percent_used=96), cleaned)

    mails = smtp_server.by_recipient()
    # the cleaned user gets the notice (not a warning too); the others their warnings
    assert set(mails) == {address(u) for u in cast.mailed}
    notice = mails[address(cast.old)].message
    assert unfolded(notice["Subject"]) == f"[dkmonitor] 1000 old files moved: {HOSTNAME}:/scratch"
    assert "    /archive/node7/scratch\n" in notice.get_content()
    body = words(mails[address(cast.old)])
    assert "1000 of your files, 50.0 GiB in all" in body
    assert "moved to /archive/node7/scratch keeping" in body
    assert "96.0% full, over its critical threshold of 95%" in body
    kinds = {r.address: r.kind for r in log_rows(database)}
    assert kinds[address(cast.old)] == "move-notice"
    assert kinds[address(cast.top)] == "warning"
    assert report.sent == 3


def test_deletion_notice(database, settings, smtp_server):
    cast = make_cast()
    task = make_task(relocation_path=None, delete_old_files=True, email_usage_warnings=False)
    cleaned = CleanSummary(deleted={cast.some_old.uid: AlteredFiles(7, 1536)})
    notify_step(database, settings, make_run(task, percent_used=96), cleaned)
    mails = smtp_server.by_recipient()
    assert list(mails) == [address(cast.some_old)]
    body = words(mails[address(cast.some_old)])
    assert "7 of your files, 1.50 KiB in all" in body and "deleted" in body


def test_notices_are_not_subject_to_the_interval(database, settings, smtp_server):
    cast = make_cast()
    task = make_task(email_usage_warnings=False)
    first = CleanSummary(moved={cast.old.uid: AlteredFiles(3, GiB)})
    second = CleanSummary(moved={cast.old.uid: AlteredFiles(4, GiB)})
    notify_step(database, settings, make_run(task, percent_used=96), first)
    notify_step(database, settings, make_run(task, percent_used=96), second)
    assert len(smtp_server.received) == 2


def test_no_notices_when_alterations_mail_is_off(database, settings, smtp_server):
    cast = make_cast()
    task = make_task(email_data_alterations=False, email_usage_warnings=False)
    cleaned = CleanSummary(moved={cast.old.uid: AlteredFiles(3, GiB)})
    assert notify_step(database, settings, make_run(task, percent_used=96), cleaned).sent == 0


def test_failed_notice_is_resent_verbatim_once_by_the_next_run(
    database, settings, smtp_server
):
    cast = make_cast()
    task = make_task(email_usage_warnings=False)
    cleaned = CleanSummary(moved={cast.old.uid: AlteredFiles(1000, 50 * GiB)})
    smtp_server.refuse = "451 4.3.0 try again later"
    failed = notify_step(database, settings, make_run(task, percent_used=96), cleaned)
    assert failed.failed == 1

    # Still refusing: the retry fails too and is logged; nothing is lost.
    still = notify_step(database, settings, make_run(task, percent_used=85), None)
    assert (still.sent, still.failed) == (0, 1)

    smtp_server.refuse = None
    retry = notify_step(database, settings, make_run(task, percent_used=85), None)
    assert (retry.sent, retry.failed) == (1, 0)
    [received] = smtp_server.received
    rows = log_rows(database)
    assert received.message["Subject"] == rows[0].subject
    assert received.message.get_content().rstrip("\n") == rows[0].body.rstrip("\n")
    assert [(r.kind, r.delivered) for r in rows] == [("move-notice", False)] * 2 + [
        ("move-notice", True)
    ]

    # Delivered now: no further resends.
    assert notify_step(database, settings, make_run(task, percent_used=85), None).sent == 0
    assert len(smtp_server.received) == 1


def test_failed_notice_retries_stop_after_a_week(database, settings, smtp_server):
    cast = make_cast()
    task = make_task(email_usage_warnings=False)
    cleaned = CleanSummary(moved={cast.old.uid: AlteredFiles(2, GiB)})
    smtp_server.refuse = "451 4.3.0 try again later"
    notify_step(database, settings, make_run(task, percent_used=96), cleaned)
    smtp_server.refuse = None
    age_log(database, 8 * 24)
    assert notify_step(database, settings, make_run(task, percent_used=85), None).sent == 0


# ------------------------------------------------------------------ delivery modes


def test_outbox_writes_eml_files_and_counts_them_delivered(database, tmp_path):
    outbox = tmp_path / "outbox"
    settings = make_settings(tmp_path, outbox_dir=outbox, smtp_port=1)
    report = notify_step(database, settings, make_run(), None)
    assert (report.sent, report.failed) == (3, 0)
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 3
    parsed = [BytesParser(policy=policy.default).parsebytes(f.read_bytes()) for f in files]
    assert {m["To"] for m in parsed} == {address(u) for u in make_cast().mailed}
    assert all("Dear " in m.get_content() for m in parsed)
    assert all(r.delivered for r in log_rows(database))
    assert not list(outbox.glob(".*.tmp"))


def test_dry_run_sends_nothing_writes_nothing_and_says_who_would_get_what(
    database, settings, smtp_server
):
    cast = make_cast()
    cleaned = CleanSummary(dry_run=True, moved={cast.old.uid: AlteredFiles(9, 2 * GiB)})
    report = notify_step(database, settings, make_run(dry_run=True, percent_used=96), cleaned)
    assert smtp_server.received == [] and log_rows(database) == []
    assert report.sent == 0 and report.failed == 0
    lines = "\n".join(report.would_send)
    assert len(report.would_send) == 3
    notice = "move-notice (moved 9 files, 2.00 GiB)"
    assert f"{cast.old.username} <{address(cast.old)}>: {notice}" in lines
    assert f"{cast.top.username} <{address(cast.top)}>: usage warning (top space)" in lines
    assert cast.tidy.username not in lines


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_is_used_when_configured(database, tmp_path, smtp_server_factory):
    server = smtp_server_factory(login=("mailer", "s3cret"))
    good = make_settings(tmp_path, smtp_port=server.port, smtp_username="mailer",
                         smtp_password="s3cret")
    assert notify_step(database, good, make_run(), None).sent == 3

    bad = make_settings(tmp_path, smtp_port=server.port, smtp_username="mailer",
                        smtp_password="wrong", notify_interval_hours=0.0001)
    age_log(database, 1)
    report = notify_step(database, bad, make_run(), None)
    assert report.failed == 3 and "login as mailer refused" in report.errors[0]
    assert len(server.received) == 3


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_tls_delivery_verifies_the_server_against_the_configured_ca(
    database, tmp_path, smtp_server_factory, tls_certificate, tls
):
    server = smtp_server_factory(tls=tls, certificate=tls_certificate)
    flag = {"smtp_starttls": "yes"} if tls == "starttls" else {"smtp_ssl": "yes"}
    trusted = make_settings(tmp_path, smtp_port=server.port,
                            smtp_ca_file=tls_certificate.cert, **flag)
    assert notify_step(database, trusted, make_run(), None).sent == 3
    assert len(server.received) == 3 and all(r.encrypted for r in server.received)

    # The same self-signed server against the system's CAs: refused, nothing sent.
    untrusted = make_settings(tmp_path, smtp_port=server.port, notify_interval_hours=0.0001,
                              **flag)
    age_log(database, 1)
    report = notify_step(database, untrusted, make_run(), None)
    assert report.failed == 3 and report.sent == 0
    assert "certificate verify failed" in report.errors[0]
    assert len(server.received) == 3


def test_starttls_required_by_the_server_but_not_configured_fails_cleanly(
    database, tmp_path, smtp_server_factory, tls_certificate
):
    server = smtp_server_factory(tls="starttls", certificate=tls_certificate)
    report = notify_step(database, make_settings(tmp_path, smtp_port=server.port),
                         make_run(), None)
    assert report.failed == 3 and server.received == []
    assert "STARTTLS" in report.errors[0]


def test_a_missing_ca_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, smtp_starttls="yes", smtp_ca_file=tmp_path / "nope.pem")
    assert "smtp_ca_file" in str(caught.value) and "nope.pem" in str(caught.value)


# ------------------------------------------------------------------ safety


def test_user_name_with_newline_cannot_inject_a_header(database, settings, smtp_server):
    cast = make_cast()
    evil = replace(cast.old, username=f"{cast.old.username}\r\nBcc: victim@evil.test")
    task = make_task(target_path="/scratch\nX-Injected: yes")
    report = notify_step(database, settings, make_run(task, (cast.top, evil)), None)

    assert report.failed == 1 and "unsafe mail address" in report.errors[0]
    for received in smtp_server.received:
        assert "victim@evil.test" not in received.rcpt_tos
        assert received.message["Bcc"] is None and received.message["X-Injected"] is None
        assert b"\nBcc:" not in received.raw and b"\nX-Injected:" not in received.raw
    [top] = smtp_server.received
    assert unfolded(top.message["Subject"]) == (
        f"[dkmonitor] usage warning: {HOSTNAME}:/scratch?X-Injected: yes"
    )


def test_override_template_dir(database, tmp_path, smtp_server):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "header.txt").write_text("Hello {username}, {hostname} speaking.\n")
    (overrides / "README").write_text("not a template, ignored\n")
    settings = make_settings(tmp_path, smtp_port=smtp_server.port, template_dir=overrides)
    check_templates(settings)
    notify_step(database, settings, make_run(), None)
    cast = make_cast()
    body = smtp_server.by_recipient()[address(cast.top)].message.get_content()
    assert body.startswith(f"Hello {cast.top.username}, node7 speaking.\n\n* You are among")


def test_unknown_placeholder_fails_the_check_naming_file_and_placeholder(tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "top_space.txt").write_text("You use {total_size} on {target_path}.\n")
    settings = make_settings(tmp_path, template_dir=overrides)
    with pytest.raises(ConfigError) as caught:
        check_templates(settings)
    message = str(caught.value)
    assert str(overrides / "top_space.txt") in message and "{total_size}" in message


def test_broken_template_makes_notify_report_an_error_not_crash(database, tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "header.txt").write_text("Dear {username\n")
    settings = make_settings(tmp_path, template_dir=overrides)
    report = notify_step(database, settings, make_run(), None)
    assert not report.ok and "header.txt" in report.errors[0]


def test_check_rejects_bad_addresses(tmp_path):
    with pytest.raises(ConfigError, match="from_address"):
        check_templates(make_settings(tmp_path, from_address="dkm\nBcc: x@y.z"))
    with pytest.raises(ConfigError, match="admin_addresses"):
        check_templates(make_settings(tmp_path, admin_addresses="ok@a.b, not an address"))
    mapping = tmp_path / "map"
    mapping.write_text("alice alice@elsewhere.org\nbob\n")
    with pytest.raises(ConfigError, match=f"{mapping}:2"):
        check_templates(make_settings(tmp_path, address_map=mapping))


def test_address_map_redirects_and_silences(database, tmp_path, smtp_server):
    cast = make_cast()
    mapping = tmp_path / "addresses"
    mapping.write_text(
        f"{cast.top.username} boss@lab.example.org  # the PI\n{cast.some_old.username} -\n"
    )
    settings = make_settings(tmp_path, smtp_port=smtp_server.port, address_map=mapping)
    report = notify_step(database, settings, make_run(), None)
    assert set(smtp_server.by_recipient()) == {"boss@lab.example.org", address(cast.old)}
    assert report.sent == 2


# ------------------------------------------------------------------ administrators


def test_mail_admins_sends_one_summary(tmp_path, smtp_server):
    settings = make_settings(tmp_path, smtp_port=smtp_server.port,
                             admin_addresses="root@example.edu, ops@example.edu")
    failures = ["task scratch: target /scratch is missing", "uid 4000123 has no passwd entry"]
    sent = mail_admins(settings, HOSTNAME, failures)
    assert sent is not None and sent.error is None
    [mail] = smtp_server.received
    assert (sent.subject, sent.body) == (mail.message["Subject"], mail.message.get_content())
    assert set(mail.rcpt_tos) == {"root@example.edu", "ops@example.edu"}
    assert mail.message["Subject"] == "[dkmonitor] node7: run failed (2 problems)"
    body = mail.message.get_content()
    assert "* task scratch: target /scratch is missing" in body
    assert "* uid 4000123 has no passwd entry" in body


def test_mail_admins_reports_its_own_failure(tmp_path, dead_smtp_port):
    settings = make_settings(tmp_path, smtp_port=dead_smtp_port, admin_addresses="root@x.org")
    sent = mail_admins(settings, HOSTNAME, ["something broke"])
    assert sent is not None and sent.error is not None
    assert sent.error.startswith("mail to administrators (root@x.org) not delivered")


def test_mail_admins_without_admins_or_failures_does_nothing(tmp_path, smtp_server):
    settings = make_settings(tmp_path, smtp_port=smtp_server.port)
    assert mail_admins(settings, HOSTNAME, ["x"]) is None
    with_admins = make_settings(tmp_path, smtp_port=smtp_server.port, admin_addresses="a@b.c")
    assert mail_admins(with_admins, HOSTNAME, []) is None
    assert smtp_server.received == []


def test_outbox_dir_unwritable_is_a_failure_not_a_crash(database, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = make_settings(tmp_path, outbox_dir=Path(blocker) / "outbox")
    report = notify_step(database, settings, make_run(), None)
    assert report.failed == 3 and "outbox" in report.errors[0]
