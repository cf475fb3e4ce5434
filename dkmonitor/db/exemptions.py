"""Exemptions: add, list, remove, and the active rules for one task's run.

An exemption names a user or a path under a task's target, an expiry and a
reason, and records who made it and when. Expired exemptions are kept (and
listed as expired) until removed, so the record of why a file was spared
survives the exemption itself.
"""

from __future__ import annotations

import os
import posixpath
import pwd
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dkmonitor.clean.exemptions import ExemptionView, ExemptRules, relative_parts, rules_of
from dkmonitor.db.models import Exemption, Task
from dkmonitor.errors import DkmError, TaskError


def who_is_asking(environ: dict[str, str] | None = None) -> str:
    """The administrator's own name: SUDO_USER when run through sudo, else the login."""
    env = os.environ if environ is None else environ
    sudo_user = env.get("SUDO_USER", "").strip()
    if sudo_user:
        return sudo_user
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _resolve_user(name: str) -> tuple[str, int]:
    try:
        entry = pwd.getpwnam(name)
        return entry.pw_name, entry.pw_uid
    except KeyError:
        pass
    if name.isdigit():  # an owner with no passwd entry, shown by number in scans
        return name, int(name)
    raise DkmError(f"exempt: --user {name!r}: no such user (give a login name or a uid)")


def add_exemption(
    session: Session,
    task_name: str,
    *,
    user: str | None,
    path: str | None,
    expires_at: datetime,
    reason: str,
    created_by: str,
    now: datetime,
) -> int:
    """Store one exemption and return its id; DkmError (exit 2) for bad input."""
    task = session.scalar(select(Task).where(Task.name == task_name))
    if task is None:
        raise TaskError(f"task {task_name!r}: no such task (see `dkmonitor task list`)")
    if (user is None) == (path is None):
        raise DkmError("exempt add: give exactly one of --user NAME or --path PATH")
    if not reason.strip():
        raise DkmError("exempt add: --reason must say why (it is shown to other admins)")
    if expires_at <= now:
        raise DkmError(f"exempt add: --until {expires_at:%Y-%m-%d %H:%M} UTC is not in the future")
    row = Exemption(task_name=task_name, expires_at=expires_at, reason=reason.strip(),
                    created_by=created_by, created_at=now)
    if user is not None:
        row.username, row.uid = _resolve_user(user)
    else:
        assert path is not None
        row.path = _path_under_target(path, task.target_path)
    session.add(row)
    session.flush()
    return row.id


def _path_under_target(path: str, target: str) -> str:
    if not path.startswith("/"):
        raise DkmError(f"exempt add: --path {path!r} must be absolute")
    normal = posixpath.normpath(path)
    if relative_parts(posixpath.normpath(target), normal) is None:
        raise DkmError(f"exempt add: --path {path!r} is not under the task's target {target}")
    return normal


def list_exemptions(session: Session, task_name: str | None, now: datetime) -> list[ExemptionView]:
    query = select(Exemption).order_by(Exemption.task_name, Exemption.id)
    if task_name is not None:
        query = query.where(Exemption.task_name == task_name)
    return [
        ExemptionView(id=row.id, task=row.task_name, user=row.username, path=row.path,
                      expires_at=row.expires_at, reason=row.reason, created_by=row.created_by,
                      created_at=row.created_at, expired=row.expires_at <= now, uid=row.uid)
        for row in session.scalars(query)
    ]


def remove_exemption(session: Session, exemption_id: int) -> ExemptionView:
    row = session.get(Exemption, exemption_id)
    if row is None:
        raise DkmError(f"exempt remove: no exemption {exemption_id} (see `dkmonitor exempt list`)")
    view = ExemptionView(id=row.id, task=row.task_name, user=row.username, path=row.path,
                         expires_at=row.expires_at, reason=row.reason,
                         created_by=row.created_by, created_at=row.created_at, expired=False)
    session.delete(row)
    return view


def active_rules(session: Session, task_name: str, target: str, now: datetime) -> ExemptRules:
    """The exemptions of ``task_name`` in force at ``now``, as the cleaner asks them."""
    return rules_of(list_exemptions(session, task_name, now), target)
