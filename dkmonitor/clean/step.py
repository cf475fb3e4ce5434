"""The clean step of a run: what the runner calls after a full scan.

Only acts when the run is over its critical threshold and the task moves or
deletes (the runner checks both; checked again here because this is the
code with rm power). Problems that must make the run exit 1 come back in
``summary.error``; nothing here raises for an expected failure.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.announce.record import AnnounceRecord
from dkmonitor.clean.cleaner import Cleaner
from dkmonitor.clean.preflight import CleanRefused
from dkmonitor.clean.reconcile import reconcile_task
from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.taskrun import CleanSummary, TaskRun
from dkmonitor.taskspec import TaskSpec

log = logging.getLogger(__name__)


def clean_step(
    database: Database | None, settings: Settings, run: TaskRun,
    *, record: AnnounceRecord | None = None,
) -> CleanSummary:
    """Move or delete the task's old files (only announced ones, given ``record``);
    on a dry run only count them."""
    task = run.task
    if not task.cleans or not (run.over_critical or task.clean_always):
        log.debug("%s: not cleaning (over critical: %s, cleans: %s)",
                  task.name, run.over_critical, task.cleans)
        return CleanSummary(dry_run=run.dry_run)
    try:
        cleaner = Cleaner.open(database, settings, run, record=record)
    except CleanRefused as exc:
        log.error("%s", exc)
        return CleanSummary(dry_run=run.dry_run, error=str(exc))
    with cleaner:
        summary = cleaner.clean()
    _log_summary(run, summary)
    return summary


def reconcile_step(database: Database | None, settings: Settings, task: TaskSpec) -> list[str]:
    """Settle what an interrupted run of ``task`` left pending; the problems left, if any.

    The runner calls it at the start of every full run, under the task's lock,
    before the scan (so the scan sees where the files really are). Rows it
    cannot settle stay pending and keep the cleaner from acting (preflight).
    """
    if database is None:
        return []
    try:
        settled = reconcile_task(database, task, settings.hostname)
    except (OSError, SQLAlchemyError) as exc:
        message = f"task {task.name}: cannot reconcile the action journal: {exc}"
        log.error("%s", message)
        return [message]
    for problem in settled.problems:
        log.error("task %s: cannot settle an unfinished action: %s", task.name, problem)
    if settled.temps_removed:
        log.info("task %s: removed %d temporary copies of an interrupted run", task.name,
                 settled.temps_removed)
    return [f"task {task.name}: unfinished action not settled: {p}" for p in settled.problems]


def _log_summary(run: TaskRun, summary: CleanSummary) -> None:
    verb = "would be " if summary.dry_run else ""
    for label, per_user in (("moved", summary.moved), ("deleted", summary.deleted)):
        files = sum(a.files for a in per_user.values())
        size = sum(a.bytes for a in per_user.values())
        if files:
            log.info("%s: %d files (%d bytes) %s%s for %d users", run.task.name, files, size,
                     verb, label, len(per_user))
    if summary.skipped or summary.failed:
        log.info("%s: %d skipped, %d failed", run.task.name, summary.skipped, summary.failed)
    if summary.emergency:
        log.warning("%s: %s", run.task.name, summary.emergency)
    if summary.stopped:
        log.info("%s: cleaning stopped early: %s", run.task.name, summary.stopped)
    if summary.error:
        log.error("%s", summary.error)
