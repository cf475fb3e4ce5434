"""The mail log (table ``notifications``): the interval rule and notice retries.

Every attempt is a row, delivered or with its error. Two questions are
answered from it:

* Was this user already *successfully* warned for this task within
  ``notify_interval_hours``? Only delivered rows count, so a warning that
  failed is simply sent again by the next run that finds it applies.
* Which move/deletion notices still owe their user a mail? Notices are about
  something that happened once, so they are resent verbatim from the stored
  subject and body. A retry is a new row carrying the same task, user, kind,
  subject and body; rows with those equal form one notice's history, and the
  notice is pending while its newest attempt is undelivered. That needs no
  extra column, and the chain of attempts stays visible in the log.
  Retries stop ``NOTICE_RETRY_DAYS`` after the first attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dkmonitor.db.models import Notification
from dkmonitor.notify.compose import NOTICE_KINDS, WARNING

NOTICE_RETRY_DAYS = 7


def warned_since(
    session: Session, task_name: str, hostname: str, usernames: Iterable[str], since: datetime
) -> dict[str, datetime]:
    """username -> time of their newest delivered warning after ``since``."""
    names = list(usernames)
    if not names:
        return {}
    rows = session.execute(
        select(Notification.username, Notification.created_at).where(
            Notification.task_name == task_name,
            Notification.hostname == hostname,
            Notification.kind == WARNING,
            Notification.delivered.is_(True),
            Notification.created_at > since,
            Notification.username.in_(names),
        )
    )
    latest: dict[str, datetime] = {}
    for username, created_at in rows:
        if username not in latest or created_at > latest[username]:
            latest[username] = created_at
    return latest


def pending_notices(
    session: Session, task_name: str, hostname: str, now: datetime
) -> list[Notification]:
    """The newest attempt of each notice still owed, oldest notice first.

    Owed: its newest attempt failed and its first attempt is less than
    NOTICE_RETRY_DAYS old. Rows are read back twice that far, so that a
    notice given up on is seen whole (its first attempt included) and stays
    given up on.
    """
    limit = now - timedelta(days=NOTICE_RETRY_DAYS)
    rows = session.scalars(
        select(Notification)
        .where(
            Notification.task_name == task_name,
            Notification.hostname == hostname,
            Notification.kind.in_(NOTICE_KINDS),
            Notification.created_at >= now - timedelta(days=2 * NOTICE_RETRY_DAYS),
        )
        .order_by(Notification.created_at, Notification.id)
    )
    first: dict[tuple[str, str, str, str], datetime] = {}
    newest: dict[tuple[str, str, str, str], Notification] = {}
    for row in rows:
        key = (row.username, row.kind, row.subject, row.body)
        first.setdefault(key, row.created_at)
        newest[key] = row
    return [
        row for key, row in newest.items() if not row.delivered and first[key] >= limit
    ]


def admin_bodies_since(session: Session, hostname: str, since: datetime) -> list[str]:
    """Bodies of the administrators' summaries delivered from this host since then."""
    return list(session.scalars(
        select(Notification.body).where(
            Notification.hostname == hostname,
            Notification.kind == "admin",
            Notification.delivered.is_(True),
            Notification.created_at > since,
        )
    ))


def record(
    session: Session,
    *,
    scan_id: int | None,
    task_name: str,
    hostname: str,
    username: str,
    address: str,
    kind: str,
    subject: str,
    body: str,
    error: str | None,
    created_at: datetime,
) -> None:
    """One attempt: delivered when ``error`` is None."""
    session.add(
        Notification(
            scan_id=scan_id,
            task_name=task_name,
            hostname=hostname,
            username=username[:255],
            address=address[:512],
            kind=kind,
            subject=subject,
            body=body,
            created_at=created_at,
            delivered=error is None,
            error=error,
        )
    )
