"""The clean step of a run: what the runner calls after a full scan.

Only acts when the run is over its critical threshold and the task moves or
deletes (the runner checks both; checked again here because this is the
code with rm power). Problems that must make the run exit 1 come back in
``summary.error``; nothing here raises for an expected failure.
"""

from __future__ import annotations

import logging

from dkmonitor.clean.cleaner import Cleaner, CleanRefused
from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.taskrun import CleanSummary, TaskRun

log = logging.getLogger(__name__)


def clean_step(database: Database | None, settings: Settings, run: TaskRun) -> CleanSummary:
    """Move or delete the task's old files; on a dry run only count them."""
    task = run.task
    if not task.cleans or not run.over_critical:
        log.debug("%s: not cleaning (over critical: %s, cleans: %s)",
                  task.name, run.over_critical, task.cleans)
        return CleanSummary(dry_run=run.dry_run)
    try:
        cleaner = Cleaner.open(database, settings, run)
    except CleanRefused as exc:
        log.error("%s", exc)
        return CleanSummary(dry_run=run.dry_run, error=str(exc))
    with cleaner:
        summary = cleaner.clean()
    _log_summary(run, summary)
    return summary


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
    if summary.stopped:
        log.info("%s: cleaning stopped early: %s", run.task.name, summary.stopped)
    if summary.error:
        log.error("%s", summary.error)
