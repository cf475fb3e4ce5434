"""What follows a full scan of a task that moves or deletes: clean, then announce.

Without --notice-days: clean (over critical, or always with --clean-always)
as DESIGN.md's "Moving and deleting" says. With it, one record of the
announcements is opened for both steps: the clean step acts only on files
that record announced long enough ago (plus, over --emergency, unannounced
ones), and the announce step, run after it so that what was just acted on
leaves the lists, lists this run's candidates (over warning, or always with
--clean-always). Announcing needs the database (exemptions live there): when
it is down, neither step runs and the run says why.
"""

from __future__ import annotations

import logging
import os
import pwd
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dkmonitor.config import Settings
from dkmonitor.db.backends import is_database_error
from dkmonitor.db.engine import Database
from dkmonitor.taskrun import AnnounceSummary, CleanSummary, TaskRun
from dkmonitor.units import iso_utc

if TYPE_CHECKING:
    from dkmonitor.clean.exemptions import ExemptionView

log = logging.getLogger(__name__)


@dataclass
class PurgeResult:
    clean: CleanSummary | None = None
    announce: AnnounceSummary | None = None
    errors: list[str] = field(default_factory=list)  # each makes the run exit 1


def cleaning_due(run: TaskRun) -> bool:
    task = run.task
    return task.cleans and (run.over_critical or task.clean_always)


def announcing_due(run: TaskRun) -> bool:
    task = run.task
    return task.cleans and task.notice_days > 0 and (run.over_warning or task.clean_always)


def purge_steps(database: Database | None, settings: Settings, run: TaskRun) -> PurgeResult:
    """Clean and/or announce, as the task and the disk use say; never raises for a task."""
    try:
        return _purge_steps(database, settings, run)
    finally:  # the scan's spooled candidates (announce/spool.py) are this run's only
        for fd in run.result.candidates if run.result is not None else ():
            os.close(fd)


def _purge_steps(database: Database | None, settings: Settings, run: TaskRun) -> PurgeResult:
    result = PurgeResult()
    task = run.task
    if not (cleaning_due(run) or announcing_due(run)):
        return result
    if task.notice_days > 0 and database is None and not run.dry_run:
        result.errors.append(
            f"task {task.name}: the database is unreachable: files were neither announced "
            "nor cleaned (exemptions and the action journal live there)"
        )
        return result
    try:
        if task.notice_days > 0:
            _announced_purge(database, settings, run, result)
        else:
            # Imported once cleaning is due: a run that cleans nothing never loads it.
            from dkmonitor.clean.step import clean_step

            result.clean = clean_step(database, settings, run)
    except Exception as exc:
        if not isinstance(exc, (OSError, sqlite3.Error)) and not is_database_error(exc):
            raise
        step = "announcing and cleaning" if task.notice_days > 0 else "cleaning"
        result.errors.append(f"task {task.name}: {step} stopped: {_reason(exc)}")
    for error in result.errors:
        log.error("%s", error)
    return result


def _reason(exc: Exception) -> str:
    """An OSError as "what: where" (root's state directory full, say), others as they say."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def notices_sent(settings: Settings, run: TaskRun, announce: AnnounceSummary | None
                 ) -> list[str]:
    """After delivery: record the purge notices and final reminders as sent; the errors."""
    if announce is None or run.dry_run or not any(u.mail for u in announce.users.values()):
        return []
    from dkmonitor.announce.record import AnnounceRecord
    from dkmonitor.announce.step import remember_notices

    try:
        with AnnounceRecord.open(settings.state_dir, run.task.name) as record:
            remember_notices(record, run, announce)
    except (OSError, sqlite3.Error) as exc:
        line = f"task {run.task.name}: could not record the notices sent: {exc}"
        log.error("%s", line)
        return [line]
    return []


def purge_notes(
    task_name: str, clean: CleanSummary | None, announce: AnnounceSummary | None
) -> list[str]:
    """What the administrators should hear of without the run failing."""
    notes: list[str] = []
    if clean is not None and clean.emergency:
        files = sum(a.files for a in clean.unannounced.values())
        size = sum(a.bytes for a in clean.unannounced.values())
        notes.append(f"task {task_name}: emergency purge: {clean.emergency}; {files} "
                     f"unannounced files ({size} bytes) of {len(clean.unannounced)} users")
    if announce is not None:
        notes += announce.refreshed
    return notes


def _announced_purge(
    database: Database | None, settings: Settings, run: TaskRun, result: PurgeResult
) -> None:
    from dkmonitor.announce.record import AnnounceRecord
    from dkmonitor.announce.step import AnnounceContext, announce_step
    from dkmonitor.clean.exemptions import load_exemptions, log_rules, rules_of

    task = run.task
    views = load_exemptions(database, task.name, run.started_at)
    exempt = log_rules(task.name, rules_of(views, task.target_path))
    with AnnounceRecord.open(settings.state_dir, task.name, dry_run=run.dry_run) as record:
        if cleaning_due(run):
            from dkmonitor.clean.step import clean_step

            result.clean = clean_step(database, settings, run, record=record)
        if announcing_due(run):
            rows = exemption_rows(views)
            spools = run.result.candidates if run.result is not None else ()
            context = AnnounceContext(settings, record, exempt, rows, spools,
                                      run.result.candidates_error if run.result else "")
            result.announce = announce_step(run, context)
            if result.announce.error:
                result.errors.append(result.announce.error)


def exemption_rows(views: list[ExemptionView]) -> tuple[dict[str, Any], ...]:
    """The task's exemptions as users see them, each with the uid it concerns.

    ``owner_uid`` (not shown) is whose summary lists it: the exempted user, or
    the owner of the exempted path - never another user, whose paths are not
    theirs to see.
    """
    rows = []
    for view in views:
        try:
            owner = (pwd.getpwnam(view.user).pw_uid if view.user
                     else os.lstat(view.path or "").st_uid)
        except (KeyError, OSError):
            continue
        rows.append({
            "id": view.id, "user": view.user, "path": view.path,
            "until": iso_utc(view.expires_at), "reason": view.reason,
            "expired": view.expired, "owner_uid": owner,
        })
    return tuple(rows)
