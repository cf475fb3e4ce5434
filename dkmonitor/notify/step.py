"""The runner's entry points: check the mail setup, mail a run's users, mail the admins.

``notify_step`` turns one task's run into mails (compose), drops those the
interval rule or the address map say not to send (maillog, addresses),
resends notices a previous run failed to deliver, then delivers (mailer) and
logs every attempt. It never raises for a mail problem: failures come back in
the NotifyReport, so the scan already stored and the other users' mail are
never lost to one bad address or a dead server.

The runner calls it once per task run, *after* the clean step, passing the
CleanSummary (or None when the task did not clean): a user whose files were
moved or deleted gets the notice, and no warning in the same run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.db.models import utcnow
from dkmonitor.errors import ConfigError
from dkmonitor.notify import maillog
from dkmonitor.notify.addresses import address_for, is_valid_address, load_address_map
from dkmonitor.notify.compose import (
    WARNING,
    Draft,
    notice_drafts,
    purge_drafts,
    warning_drafts,
)
from dkmonitor.notify.mailer import DeliveryError, Mailer, open_mailer
from dkmonitor.notify.message import HeaderError, build_message, clean_text
from dkmonitor.notify.templates import load_templates
from dkmonitor.scan.users import has_passwd_entry
from dkmonitor.taskrun import AnnounceSummary, CleanSummary, TaskRun

log = logging.getLogger(__name__)


@dataclass
class NotifyReport:
    """What one notify step did, for the runner's exit status and summary."""

    task_name: str = ""
    sent: int = 0  # delivered (or written to the outbox)
    failed: int = 0  # attempted or failed fast, not delivered
    suppressed: int = 0  # warnings held back by notify_interval_hours
    would_send: list[str] = field(default_factory=list)  # dry run: "user <address>: what"
    errors: list[str] = field(default_factory=list)  # one line each, for stderr and the admins
    no_passwd: list[str] = field(default_factory=list)  # owners not mailed: no passwd entry
    notes: list[str] = field(default_factory=list)  # informational, no attention needed

    @property
    def ok(self) -> bool:
        """False when the run should exit 1 because of mail."""
        return self.failed == 0 and not self.errors

    def summary(self) -> str | None:
        """One line for stderr when something went wrong, else None."""
        if self.ok:
            return None
        if self.failed:
            total = self.sent + self.failed
            first = f": {self.errors[0]}" if self.errors else ""
            return f"task {self.task_name}: {self.failed} of {total} mails not delivered{first}"
        return f"task {self.task_name}: {self.errors[0]}"


@dataclass(frozen=True)
class _Outgoing:
    """A draft with its address, or a stored notice being resent."""

    username: str
    address: str
    kind: str
    subject: str
    body: str
    summary: str
    scan_id: int | None


def check_templates(settings: Settings) -> None:
    """Check the whole mail setup before a run mails anybody; raise ConfigError.

    Templates (shipped and overrides: known file names, known placeholders),
    the address map, and the configured addresses: all of it fails here with
    the file, key or placeholder named, rather than halfway through a run.
    """
    email = settings.email
    load_templates(email.template_dir)
    load_address_map(email.address_map)
    if not is_valid_address(email.from_address):
        raise ConfigError(
            f"[email] from_address = {clean_text(email.from_address)!r}: not a valid mail address"
        )
    for address in email.admin_addresses:
        if not is_valid_address(address):
            raise ConfigError(
                f"[email] admin_addresses: {clean_text(address)!r} is not a valid mail address"
            )
    if email.user_postfix and not is_valid_address(f"user@{email.user_postfix}"):
        raise ConfigError(
            f"[email] user_postfix = {clean_text(email.user_postfix)!r}: not a mail domain"
        )


def notify_step(
    database: Database | None,
    settings: Settings,
    run: TaskRun,
    cleaned: CleanSummary | None,
    *,
    announced: AnnounceSummary | None = None,
    mailer: Mailer | None = None,
    has_account: Callable[[int], bool] = has_passwd_entry,
) -> NotifyReport:
    """Mail the users of one task run; see the module docstring for the rules.

    ``database`` None (the database is down, the scan spooled): notices are
    still sent, unlogged; usage warnings wait for a run that can check the
    interval rule. ``mailer`` and ``has_account`` are for tests.
    """
    report = NotifyReport(task_name=run.task.name)
    email = settings.email
    if not email.enabled:
        return report
    try:
        templates = load_templates(email.template_dir)
        address_map = load_address_map(email.address_map)
    except ConfigError as exc:
        report.errors.append(str(exc))
        return report
    task = run.task
    now = utcnow()

    drafts: list[Draft] = []
    if cleaned is not None and task.email_data_alterations and (run.dry_run or not cleaned.dry_run):
        drafts += notice_drafts(run, cleaned, templates)
    if announced is not None:  # a purge notice takes the user's clean notice into it
        purge = purge_drafts(run, announced, templates, drafts)
        told = {draft.uid for draft in purge}
        drafts = [d for d in drafts if d.uid not in told] + purge
    if run.over_warning and task.email_usage_warnings:
        noticed = {draft.uid for draft in drafts}
        drafts += [d for d in warning_drafts(run, templates) if d.uid not in noticed]

    outgoing: list[_Outgoing] = []
    for draft in drafts:
        if not has_account(draft.uid):
            report.no_passwd.append(f"uid {draft.uid} ({draft.summary})")
            continue
        address = address_for(draft.username, email.user_postfix, address_map)
        if address is None:
            report.notes.append(f"{draft.username}: not mailed (address map)")
            continue
        outgoing.append(
            _Outgoing(draft.username, address, draft.kind, draft.subject, draft.body,
                      draft.summary, run.scan_id)
        )

    outgoing = _apply_interval(database, settings, run, outgoing, now, report)
    if database is not None:
        outgoing = _retries(database, run, email.user_postfix, address_map, now, report) + outgoing

    if run.dry_run:
        report.would_send += [
            f"{clean_text(o.username)} <{clean_text(o.address)}>: {o.summary}" for o in outgoing
        ]
        return report
    if not outgoing:
        return report
    _deliver(database, settings, run, outgoing, now, report, mailer)
    return report


def _apply_interval(
    database: Database | None,
    settings: Settings,
    run: TaskRun,
    outgoing: list[_Outgoing],
    now: datetime,
    report: NotifyReport,
) -> list[_Outgoing]:
    """Drop warnings delivered to the same user for the same task too recently."""
    warnings = [o for o in outgoing if o.kind == WARNING]
    if not warnings:
        return outgoing
    hours = settings.email.notify_interval_hours
    if database is None:
        if run.dry_run:
            return outgoing
        report.notes.append(
            f"task {run.task.name}: database unavailable; usage warnings wait for the next "
            "run (the mail log is needed to send each at most every "
            f"{hours:g} hours)"
        )
        return [o for o in outgoing if o.kind != WARNING]
    try:
        with database.session() as session:
            recent = maillog.warned_since(
                session, run.task.name, run.hostname, [o.username for o in warnings],
                now - timedelta(hours=hours),
            )
    except SQLAlchemyError as exc:
        report.errors.append(f"mail log unreadable, usage warnings not sent: {_db_reason(exc)}")
        return [o for o in outgoing if o.kind != WARNING]
    kept: list[_Outgoing] = []
    for item in outgoing:
        if item.kind == WARNING and item.username in recent:
            report.suppressed += 1
            report.notes.append(
                f"{clean_text(item.username)}: usage warning not repeated (last sent "
                f"{recent[item.username]:%Y-%m-%d %H:%M} UTC, interval {hours:g} h)"
            )
            continue
        kept.append(item)
    return kept


def _retries(
    database: Database,
    run: TaskRun,
    user_postfix: str,
    address_map: dict[str, str],
    now: datetime,
    report: NotifyReport,
) -> list[_Outgoing]:
    """Notices of earlier runs whose delivery failed, to be resent as they were."""
    try:
        with database.session() as session:
            rows = maillog.pending_notices(session, run.task.name, run.hostname, now)
    except SQLAlchemyError as exc:
        report.errors.append(f"mail log unreadable, failed notices not retried: {_db_reason(exc)}")
        return []
    retries: list[_Outgoing] = []
    for row in rows:
        # The address as configured now: the failure may have been a bad map entry.
        address = address_for(row.username, user_postfix, address_map)
        if address is None:
            continue
        retries.append(
            _Outgoing(row.username, address, row.kind, row.subject, row.body,
                      f"{row.kind} (retry of {row.created_at:%Y-%m-%d %H:%M} UTC)", row.scan_id)
        )
    return retries


def _deliver(
    database: Database | None,
    settings: Settings,
    run: TaskRun,
    outgoing: list[_Outgoing],
    now: datetime,
    report: NotifyReport,
    mailer: Mailer | None,
) -> None:
    email = settings.email
    logging_ok = database is not None
    skipped = 0  # failed fast after the server was found dead: one line for them all
    with mailer or open_mailer(email, settings.hostname) as active:
        for item in outgoing:
            error: str | None = None
            failed_fast = False
            try:
                active.send(build_message(
                    sender=email.from_address, recipients=[item.address],
                    subject=item.subject, body=item.body,
                ))
            except HeaderError as exc:
                error = str(exc)
            except DeliveryError as exc:
                error = exc.reason
                failed_fast = not exc.attempted
            if error is None:
                report.sent += 1
                log.info("mailed %s <%s>: %s", clean_text(item.username),
                         clean_text(item.address), item.summary)
            else:
                report.failed += 1
                # One warning per real attempt; mails failed fast behind a dead
                # server are summed up in one line below, not one each on stderr.
                log.log(logging.INFO if failed_fast else logging.WARNING,
                        "mail to %s <%s> failed: %s", clean_text(item.username),
                        clean_text(item.address), error)
                skipped += failed_fast
                if not failed_fast:
                    report.errors.append(
                        f"mail to {clean_text(item.username)} <{clean_text(item.address)}> "
                        f"({item.kind}) not delivered: {error}"
                    )
            if logging_ok and database is not None:
                logging_ok = _log_attempt(database, run, item, error, now, report)
    if skipped:
        line = f"{skipped} more mails not attempted: the mail server was unusable"
        report.errors.append(line)
        log.warning("%s", line)


def _log_attempt(
    database: Database,
    run: TaskRun,
    item: _Outgoing,
    error: str | None,
    now: datetime,
    report: NotifyReport,
) -> bool:
    """One row per attempt, committed at once: a crash later loses no record."""
    try:
        with database.session() as session:
            maillog.record(
                session, scan_id=item.scan_id, task_name=run.task.name, hostname=run.hostname,
                username=item.username, address=item.address, kind=item.kind,
                subject=item.subject, body=item.body, error=error, created_at=now,
            )
    except SQLAlchemyError as exc:
        report.errors.append(
            f"mail log not written, from {clean_text(item.username)} on: {_db_reason(exc)}"
        )
        return False
    return True


def _db_reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return clean_text(str(original or exc).strip().splitlines()[0])
