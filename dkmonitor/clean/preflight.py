"""Before a task cleans: may it, and into what journal?

Cleaning is refused (CleanRefused, nothing touched) when the relocation path
is, contains or lies in the target — by resolved name (taskspec) or by
device and inode through a bind mount (place.bind_conflict) — when there is
no database to journal into, or when rows an interrupted run left pending
are still unsettled (reconciliation failed): acting then could leave a file
in two places.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.clean.journal import Journal
from dkmonitor.clean.place import bind_conflict
from dkmonitor.clean.reconcile import pending_count
from dkmonitor.db.engine import Database
from dkmonitor.taskrun import TaskRun
from dkmonitor.taskspec import relocation_conflict


class CleanRefused(Exception):
    """Cleaning cannot start safely; the message names task and path."""


def check_relocation(task_name: str, target: str, relocation: str) -> None:
    """Refuse a relocation path that is, holds or lies in the target, by name or by inode."""
    conflict = relocation_conflict(target, relocation)
    if not conflict:
        try:
            conflict = bind_conflict(target, relocation)
        except OSError:
            conflict = None  # a missing path is reported when it is opened
    if conflict:
        raise CleanRefused(
            f"task {task_name}: relocation path {relocation} {conflict}; nothing was moved"
        )


def open_journal(database: Database | None, run: TaskRun, batch: int) -> Journal:
    """No journal, no action: and none while an interrupted run's rows are unsettled."""
    task = run.task
    if database is None:
        raise CleanRefused(
            f"task {task.name}: the database is unavailable and every action must be "
            "journaled first; nothing was moved or deleted"
        )
    try:
        unsettled = pending_count(database, task.name, run.hostname)
    except SQLAlchemyError as exc:
        raise CleanRefused(
            f"task {task.name}: cannot read the action journal ({str(exc).splitlines()[0]}); "
            "nothing was moved or deleted"
        ) from None
    if unsettled:
        raise CleanRefused(
            f"task {task.name}: {unsettled} action(s) of an interrupted run could not be "
            "reconciled (see the log); nothing was moved or deleted"
        )
    return Journal(database, task.name, run.hostname, run.scan_id, batch, run_id=run.run_id)
