"""The administrators' summary mail: what a run needs them to look at.

Failures (a missing target, a cleaning error, undelivered mail) are mailed
at the end of every run that has them. Owners with no passwd entry cannot
be mailed themselves, so the administrators hear of them too; when that is
the only news, at most once per task per ``notify_interval_hours``. Every
summary is one row of the mail log (kind ``admin``, task ``*``: it is about
the whole run), and its stored body names the tasks it reported, which is
what the interval reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.channels.base import AdminSummary, unmailed_line
from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.db.models import utcnow
from dkmonitor.notify import maillog
from dkmonitor.notify.mailer import DeliveryError, Mailer, open_mailer
from dkmonitor.notify.message import HeaderError, build_message, clean_text

log = logging.getLogger(__name__)

ADMIN = "admin"  # Notification.kind of the administrators' summary
WHOLE_RUN = "*"  # its task_name: the summary is about the whole run


@dataclass(frozen=True)
class AdminMail:
    """A summary mail to the administrators as attempted; ``error`` None: delivered."""

    recipients: str
    subject: str
    body: str
    error: str | None


def _subject(hostname: str, failures: int, notes: int) -> str:
    if failures:
        plural = "s" if failures != 1 else ""
        return f"[dkmonitor] {hostname}: run failed ({failures} problem{plural})"
    return f"[dkmonitor] {hostname}: owners not mailed ({notes} task{'s' if notes != 1 else ''})"


def mail_admins(
    settings: Settings,
    hostname: str,
    failures: Sequence[str],
    *,
    notes: Sequence[str] = (),
    mailer: Mailer | None = None,
) -> AdminMail | None:
    """One summary mail to ``admin_addresses``, and how it went.

    ``failures`` made the run fail; ``notes`` need attention but did not
    (owners with no passwd entry). Nothing is sent (None returned) when mail
    is off, no administrator is configured, or there is nothing to report.
    The caller writes the attempt to the mail log.
    """
    email = settings.email
    lines = [*failures, *notes]
    if not email.enabled or not email.admin_addresses or not lines:
        return None
    shown = ["\n  ".join(clean_text(part) for part in line.splitlines() or [""]) for line in lines]
    body = (
        f"dkmonitor on {clean_text(hostname)} needs your attention "
        f"({utcnow():%Y-%m-%d %H:%M} UTC):\n\n"
        + "\n".join(f"* {line}" for line in shown)
        + "\n\nThe log has the details; `dkmonitor view systems` shows the latest scans.\n"
    )
    subject = _subject(hostname, len(failures) + (len(notes) if failures else 0), len(notes))
    recipients = ", ".join(email.admin_addresses)
    try:
        message = build_message(
            sender=email.from_address, recipients=list(email.admin_addresses),
            subject=subject, body=body,
        )
        with mailer or open_mailer(email, hostname) as active:
            active.send(message)
    except (HeaderError, DeliveryError) as exc:
        reason = exc.reason if isinstance(exc, DeliveryError) else str(exc)
        error = f"mail to administrators ({clean_text(recipients)}) not delivered: {reason}"
        return AdminMail(recipients, subject, body, error)
    log.info("mailed the administrators (%s): %d problems", recipients, len(lines))
    return AdminMail(recipients, subject, body, None)


def _recently_reported(
    database: Database | None, settings: Settings, tasks: list[str], now: datetime
) -> set[str]:
    """Tasks whose owners-not-mailed note reached the administrators within the interval."""
    if database is None or not tasks:
        return set()
    since = now - timedelta(hours=settings.email.notify_interval_hours)
    try:
        with database.session() as session:
            bodies = maillog.admin_bodies_since(session, settings.hostname, since)
    except SQLAlchemyError as exc:
        log.warning("mail log unreadable, owners-not-mailed sent again: %s", exc)
        return set()
    return {task for task in tasks if any(unmailed_line(task) in body for body in bodies)}


def _log(database: Database | None, settings: Settings, sent: AdminMail, now: datetime) -> None:
    """The attempt, in the mail log. Not when the database is down: that is
    usually what the mail is about, and the log file has it."""
    if database is None:
        return
    try:
        with database.session() as session:
            maillog.record(
                session, scan_id=None, task_name=WHOLE_RUN, hostname=settings.hostname,
                username="", address=sent.recipients, kind=ADMIN, subject=sent.subject,
                body=sent.body, error=sent.error, created_at=now,
            )
    except SQLAlchemyError as exc:
        log.warning("could not write the administrators' mail to the mail log: %s", exc)


def admin_step(
    database: Database | None, settings: Settings, summary: AdminSummary,
    *, mailer: Mailer | None = None,
) -> list[str]:
    """Mail the summary if it is due; the error line when it could not be delivered."""
    now = utcnow()
    unmailed = dict(summary.unmailed)
    if not summary.failures:
        for task in _recently_reported(database, settings, list(unmailed), now):
            log.info("task %s: owners not mailed, already reported to the administrators", task)
            del unmailed[task]
    sent = mail_admins(settings, settings.hostname, summary.failures,
                       notes=[*summary.notes, *unmailed.values()], mailer=mailer)
    if sent is None:
        return []
    _log(database, settings, sent, now)
    if sent.error:
        log.error(sent.error)
        return [sent.error]
    return []
