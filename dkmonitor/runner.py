"""One run of dkmonitor: for each task, quick/full -> scan -> store -> clean -> deliver.

The runner owns the order of the steps and the error policy: one failing
task never stops the others, a database that cannot be reached turns storing
into spooling, and every outcome is collected in a RunReport for the CLI to
render and turn into an exit status. It prints nothing. What is delivered
where (mail, metrics) is up to the channels (``dkmonitor.channels``): the
runner calls their dispatch at the three moments and never asks which are on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dkmonitor.channels import dispatch
from dkmonitor.channels.base import AdminSummary, Delivery, unmailed_line
from dkmonitor.clock import utcnow
from dkmonitor.config import Settings, prepare_state_dir
from dkmonitor.db import spool, taskcache
from dkmonitor.db.backends import error_line, is_database_error, is_unavailable
from dkmonitor.db.engine import Database, open_current
from dkmonitor.db.plainwrite import every_task, nothing_pending, store_record
from dkmonitor.db.store import ScanRecord
from dkmonitor.errors import DatabaseUnavailable, TaskError
from dkmonitor.lock import AlreadyRunning, task_lock
from dkmonitor.outcome import RunReport as RunReport  # defined there, imported from here too
from dkmonitor.outcome import TaskOutcome as TaskOutcome
from dkmonitor.runrecord import failure_record, noatime_warnings, scan_record, user_rows
from dkmonitor.scan.disk import disk_usage
from dkmonitor.taskspec import TaskSpec, target_problem

if TYPE_CHECKING:
    from dkmonitor.scan.fromlist import ListSource
    from dkmonitor.scan.mpi import ScanPool

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ProgressFactory = Callable[[TaskSpec], Progress | None]


class Runner:
    """Runs tasks for one invocation; holds the database handle, if any."""

    def __init__(
        self,
        settings: Settings,
        *,
        dry_run: bool = False,
        progress: ProgressFactory | None = None,
        from_list: ListSource | None = None,
        pool: ScanPool | None = None,
    ) -> None:
        self.settings = settings
        self.dry_run = dry_run
        self.progress = progress
        self.from_list = from_list  # a site scanner's list read instead of a walk
        self.pool = pool  # rank 0 of an MPI job: the other ranks walk too
        self.report = RunReport(dry_run=dry_run)
        self.database: Database | None = None
        self.database_error: str | None = None

    # ------------------------------------------------------------ database
    def connect(self) -> Database | None:
        """Open the database and replay the spool; None (and a note) when it is down."""
        prepare_state_dir(self.settings)
        try:
            self.database = open_current(self.settings.database.url)
        except DatabaseUnavailable as exc:
            self.database_error = str(exc)
            log.error("%s; results will be spooled in %s", exc, self.settings.state_dir)
            return None
        if not self.dry_run:
            replayed = spool.replay(self.database, self.settings.state_dir)
            if replayed:
                self.report.messages.append(f"stored {replayed} spooled run(s)")
        return self.database

    def host_tasks(self, names: tuple[str, ...]) -> list[TaskSpec]:
        """This host's tasks to run: the named ones, else every enabled one."""
        hostname = self.settings.hostname
        if self.database is not None:
            every = every_task(self.database)
            mine = [task for task in every if task.hostname == hostname]
            try:
                taskcache.save_tasks(self.settings.state_dir, mine)
            except OSError as exc:  # root's state directory full, say: the runs go on
                log.warning("%s: not updated (%s): a run while the database is down would "
                            "use the tasks it holds", taskcache.cache_path(
                                self.settings.state_dir), exc.strerror or exc)
        else:
            cached = taskcache.load_tasks(self.settings.state_dir)
            if cached is None:
                raise DatabaseUnavailable(
                    f"{self.database_error}; and no local copy of this host's tasks "
                    f"in {taskcache.cache_path(self.settings.state_dir)}"
                )
            every = mine = cached
        if not names:
            return [task for task in mine if task.enabled]
        by_name = {task.name: task for task in every}
        chosen = []
        for name in names:
            task = by_name.get(name)
            if task is None:
                raise TaskError(f"task {name!r}: no such task (see `dkmonitor task list`)")
            if task.hostname != hostname:
                raise TaskError(
                    f"task {name!r}: belongs to host {task.hostname}, not {hostname}; run it there"
                )
            chosen.append(task)
        return chosen

    # ------------------------------------------------------------ runs
    def run(self, task: TaskSpec, kind: str) -> TaskOutcome:
        """Run one task under its lock; never raises for a task-level failure."""
        try:
            with task_lock(self.settings.state_dir, task.name):
                outcome = self._quick(task) if kind == "quick" else self._full(task)
        except AlreadyRunning as busy:
            outcome = TaskOutcome(
                task,
                kind,
                "skipped",
                f"task {task.name}: already running (pid {busy.pid}), skipped",
            )
            log.warning(outcome.message)
        self.report.outcomes.append(outcome)
        return outcome

    def _quick(self, task: TaskSpec) -> TaskOutcome:
        started = utcnow()
        problem = target_problem(task.target_path)
        if problem:
            return self._failed(task, "quick", f"target {task.target_path} {problem}")
        try:
            disk = disk_usage(task.target_path)
        except OSError as exc:
            return self._failed(task, "quick", f"target {task.target_path}: {exc.strerror}")
        log.info(
            "task %s on %s: %s is %.1f%% full",
            task.name,
            self.settings.hostname,
            task.target_path,
            disk.percent,
        )
        record = scan_record(task, self.settings.hostname, "quick", started, disk)
        outcome = TaskOutcome(task, "quick", "ok")
        if not self.dry_run:
            self._store(record, outcome)
        if disk.percent > task.usage_warning_threshold:
            log.info("task %s: over its warning threshold, running a full scan", task.name)
            full = self._full(task)
            full.warnings[:0] = outcome.warnings
            if outcome.status == "spooled" and full.status == "ok":
                full.status = "spooled"
            return full
        return outcome

    def _full(self, task: TaskSpec) -> TaskOutcome:
        # a full run's steps, imported here: `run quick` (hourly) mostly needs none of them
        from dkmonitor.scanstep import measure, scan_options
        from dkmonitor.taskrun import TaskRun

        if not self.dry_run and not nothing_pending(  # settle an interrupted run, before looking
                self.database, task.name, self.settings.hostname):
            from dkmonitor.clean.step import reconcile_step

            reconcile_step(self.database, self.settings, task)
        started = utcnow()
        now = time.time()
        target = task.target_path
        problem = target_problem(target)
        if problem:
            return self._failed(task, "full", f"target {target} {problem}")
        warnings = noatime_warnings(task)
        progress = self.progress(task) if self.progress else None
        try:
            options = scan_options(self.settings, task, now)
            result = measure(target, options, progress, self.from_list, self.pool)
            disk = disk_usage(target)
        except OSError as exc:
            return self._failed(task, "full", f"scanning {target}: {exc.strerror or exc}")
        for path in result.left_out:
            log.info("task %s: left out %s (dkmonitor's own state or logs)", task.name, path)
        for sample in result.error_samples:
            log.warning("task %s: %s", task.name, sample)
        users = user_rows(result)
        record = scan_record(task, self.settings.hostname, "full", started, disk, result, users)
        outcome = TaskOutcome(task, "full", "ok", warnings=warnings)
        scan_id = None if self.dry_run else self._store(record, outcome)
        if outcome.status == "failed":  # not stored anywhere: nothing may act on it
            return outcome
        outcome.run = TaskRun(
            task=task,
            hostname=self.settings.hostname,
            run_id=record.run_id,
            kind="full",
            started_at=started,
            now=now,
            disk=disk,
            result=result,
            users=users,
            scan_id=scan_id,
            dry_run=self.dry_run,
        )
        log.info(
            "task %s on %s: %d files, %d bytes, %d old files, %d errors, disk %.1f%%",
            task.name,
            self.settings.hostname,
            result.total.files,
            result.total.bytes,
            result.total.old_files,
            result.errors,
            disk.percent,
        )
        self._clean(outcome)
        self._deliver(outcome)
        return outcome

    def _clean(self, outcome: TaskOutcome) -> None:
        """Clean and/or announce (dkmonitor.purge decides which applies)."""
        run = outcome.run
        if run is None:
            return
        from dkmonitor.purge import purge_steps

        result = purge_steps(self.database, self.settings, run)
        outcome.clean, outcome.announce = result.clean, result.announce
        outcome.problems += result.errors

    def _delivery(self) -> Delivery:
        return Delivery(self.settings, self.database, self.dry_run)

    def _deliver(self, outcome: TaskOutcome) -> None:
        """Tell the run's users, through every channel that is on."""
        if outcome.run is not None:
            from dkmonitor.purge import notices_sent

            outcome.deliveries = dispatch.users(self._delivery(), outcome.run, outcome.clean,
                                                outcome.announce)
            outcome.problems += notices_sent(self.settings, outcome.run, outcome.announce)

    # ------------------------------------------------------------ helpers
    def _store(self, record: ScanRecord, outcome: TaskOutcome) -> int | None:
        """Store the record in one transaction, or spool it; returns the scan id."""
        if self.database is not None:
            try:
                return store_record(self.database, record)
            except Exception as exc:
                if not is_database_error(exc) or not is_unavailable(exc):
                    raise
                log.error(
                    "storing task %s failed (%s); spooling",
                    record.task_name,
                    error_line(exc, self.settings.database.url),
                )
        try:
            path = spool.spool_record(self.settings.state_dir, record)
        except OSError as exc:  # root's state directory full, say: the run's figures are lost
            outcome.status = "failed"
            outcome.message = (f"task {record.task_name}: results not stored: the database "
                               f"write failed, and spooling them in "
                               f"{spool.spool_dir(self.settings.state_dir)} too: "
                               f"{exc.strerror or exc} (make room there)")
            log.error("%s", outcome.message)
            return None
        outcome.status = "spooled"
        outcome.message = (
            f"task {record.task_name}: database unreachable, results spooled to {path}"
        )
        return None

    def _failed(self, task: TaskSpec, kind: str, reason: str) -> TaskOutcome:
        message = f"task {task.name}: {reason}"
        log.error(message)
        outcome = TaskOutcome(task, kind, "failed", message)
        if not self.dry_run and self.database is not None:
            record = failure_record(task, self.settings.hostname, kind, reason)
            try:
                store_record(self.database, record)
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                log.error("could not record the failure of task %s: %s", task.name, exc)
        return outcome

    def _admin_summary(self) -> AdminSummary:
        """What the administrators need to hear of: failures, and owners nobody could tell."""
        failures: list[str] = []
        notes: list[str] = []
        unmailed = {}
        for outcome in self.report.outcomes:
            if outcome.status in ("failed", "spooled") and outcome.message:
                failures.append(outcome.message)
            if outcome.clean is not None and outcome.clean.error:
                failures.append(f"task {outcome.task.name}: {outcome.clean.error}")
            failures += outcome.problems
            if outcome.clean is not None or outcome.announce is not None:
                from dkmonitor.purge import purge_notes

                notes += purge_notes(outcome.task.name, outcome.clean, outcome.announce)
            for report in outcome.deliveries.values():
                summary = report.summary()
                if summary:
                    failures.append(summary)
                if report.no_passwd:
                    unmailed[outcome.task.name] = unmailed_line(outcome.task.name) + ", ".join(
                        report.no_passwd
                    )
        return AdminSummary(tuple(failures), unmailed, tuple(notes))

    def finish(self) -> RunReport:
        """Tell the administrators, run the channels' end-of-run hooks; close the database."""
        delivery = self._delivery()
        errors = dispatch.admins(delivery, self._admin_summary())
        if not self.dry_run:
            errors += dispatch.after_run(delivery, self.report)
        if errors:
            self.report.messages += errors
            self.report.failed = True
        if self.settings.database.purge_after_days > 0 and any(
                outcome.kind == "full" for outcome in self.report.outcomes):
            from dkmonitor.db.maintenance import auto_purge  # SQLAlchemy: only when due
            auto_purge(None if self.dry_run else self.database, self.settings,
                       self.report.outcomes)
        if self.database is not None:
            self.database.dispose()
        return self.report


def run_tasks(
    settings: Settings,
    kind: str,
    names: tuple[str, ...] = (),
    *,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
    from_list: ListSource | None = None,
    pool: ScanPool | None = None,
) -> RunReport:
    """`run quick|full [TASK...]`: this host's tasks, one after the other."""
    dispatch.check(settings)  # a broken channel setup fails the run up front (exit 2)
    runner = Runner(settings, dry_run=dry_run, progress=progress, from_list=from_list,
                    pool=pool)
    runner.connect()
    try:
        tasks = runner.host_tasks(names)
    except BaseException:
        if runner.database is not None:
            runner.database.dispose()
        raise
    if runner.database is None:
        runner.report.messages.append(
            f"{runner.database_error}; running from the local task cache"
        )
    for task in tasks:
        runner.run(task, kind)
    return runner.finish()


def run_path(
    settings: Settings,
    task: TaskSpec,
    *,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
    from_list: ListSource | None = None,
    pool: ScanPool | None = None,
) -> RunReport:
    """`run path DIR`: an unsaved task, stored under the name ``path:DIR``."""
    dispatch.check(settings)  # a broken channel setup fails the run up front (exit 2)
    runner = Runner(settings, dry_run=dry_run, progress=progress, from_list=from_list,
                    pool=pool)
    if not dry_run:
        runner.connect()
    runner.run(task, "full")
    return runner.finish()
