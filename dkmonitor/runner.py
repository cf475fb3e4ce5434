"""One run of dkmonitor: for each task, quick/full -> scan -> store -> clean -> notify.

The runner owns the order of the steps and the error policy: one failing
task never stops the others, a database that cannot be reached turns storing
into spooling, and every outcome is collected in a RunReport for the CLI to
render and turn into an exit status. It prints nothing.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from dkmonitor.config import Settings
from dkmonitor.db import spool, taskcache
from dkmonitor.db.engine import Database, open_database
from dkmonitor.db.maintenance import auto_purge
from dkmonitor.db.models import utcnow
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.db.tasks import list_tasks
from dkmonitor.errors import DatabaseUnavailable, TaskError
from dkmonitor.lock import AlreadyRunning, task_lock
from dkmonitor.scan import scan_tree
from dkmonitor.scan.disk import DiskUsage, disk_usage, mount_options
from dkmonitor.scan.stats import ScanOptions, ScanResult
from dkmonitor.scan.users import username_for
from dkmonitor.taskrun import CleanSummary, TaskRun, UserUsageRow, totals_of
from dkmonitor.taskspec import TaskSpec

if TYPE_CHECKING:
    from dkmonitor.notify.step import AdminMail, NotifyReport

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ProgressFactory = Callable[[TaskSpec], Progress | None]


@dataclass
class TaskOutcome:
    task: TaskSpec
    kind: str  # quick | full
    status: str  # ok | failed | skipped | spooled
    message: str | None = None
    run: TaskRun | None = None
    clean: CleanSummary | None = None
    notify: NotifyReport | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def mail_failed(self) -> bool:
        return self.notify is not None and not self.notify.ok


@dataclass
class RunReport:
    dry_run: bool
    outcomes: list[TaskOutcome] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # run-level lines for a person
    failed: bool = False  # run-level failure (spool, admin mail) beyond the outcomes

    @property
    def exit_code(self) -> int:
        if self.failed:
            return 1
        for outcome in self.outcomes:
            if outcome.status in ("failed", "spooled") or outcome.mail_failed:
                return 1
            if outcome.clean is not None and outcome.clean.error:
                return 1
        return 0


class Runner:
    """Runs tasks for one invocation; holds the database handle, if any."""

    def __init__(
        self,
        settings: Settings,
        *,
        dry_run: bool = False,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.settings = settings
        self.dry_run = dry_run
        self.progress = progress
        self.report = RunReport(dry_run=dry_run)
        self.database: Database | None = None
        self.database_error: str | None = None

    # ------------------------------------------------------------ database
    def connect(self) -> Database | None:
        """Open the database and replay the spool; None (and a note) when it is down."""
        try:
            self.database = open_database(self.settings.database.url)
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
            with self.database.session() as session:
                every = list_tasks(session)
            mine = [task for task in every if task.hostname == hostname]
            taskcache.save_tasks(self.settings.state_dir, mine)
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
        record = self._record(task, "quick", started, disk)
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
        started = utcnow()
        now = time.time()
        target = task.target_path
        if not os.path.isdir(target):
            reason = "does not exist" if not os.path.lexists(target) else "is not a directory"
            return self._failed(task, "full", f"target {target} {reason}")
        warnings = []
        if task.age_basis == "atime" and "noatime" in mount_options(target):
            warnings.append(
                f"task {task.name}: {target} is mounted noatime but the task ages files by "
                "atime; every file will look old (use --age-basis used)"
            )
        options = ScanOptions(
            old_days=task.old_file_threshold,
            now=now,
            age_basis=task.age_basis,
            exclude=self.settings.scan.exclude,
            one_file_system=self.settings.scan.one_file_system,
            workers=self.settings.scan.workers,
        )
        progress = self.progress(task) if self.progress else None
        try:
            result = scan_tree(target, options, progress)
            disk = disk_usage(target)
        except OSError as exc:
            return self._failed(task, "full", f"scanning {target}: {exc.strerror or exc}")
        for sample in result.error_samples:
            log.warning("task %s: %s", task.name, sample)
        users = tuple(
            sorted(
                (
                    UserUsageRow.from_usage(uid, username_for(uid), usage)
                    for uid, usage in result.by_uid.items()
                ),
                key=lambda row: (-row.bytes, row.username),
            )
        )
        record = self._record(task, "full", started, disk, result, users)
        outcome = TaskOutcome(task, "full", "ok", warnings=warnings)
        scan_id = None if self.dry_run else self._store(record, outcome)
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
        self._notify(outcome)
        return outcome

    def _clean(self, outcome: TaskOutcome) -> None:
        run = outcome.run
        if run is None or not run.over_critical or not run.task.cleans:
            return
        from dkmonitor.clean.step import clean_step

        try:
            outcome.clean = clean_step(self.database, self.settings, run)
        except (OSError, SQLAlchemyError) as exc:
            outcome.status = "failed"
            outcome.message = f"task {run.task.name}: cleaning stopped: {exc}"
            log.error(outcome.message)
            return
        if outcome.clean.error:
            log.error("task %s: %s", run.task.name, outcome.clean.error)

    def _notify(self, outcome: TaskOutcome) -> None:
        run = outcome.run
        if run is None or not self.settings.email.enabled:
            return
        from dkmonitor.notify.step import notify_step

        # on a dry run the notify step only reads the mail log (for the interval rule)
        outcome.notify = notify_step(self.database, self.settings, run, outcome.clean)
        summary = outcome.notify.summary()
        if summary:
            log.error(summary)

    # ------------------------------------------------------------ helpers
    def _record(
        self,
        task: TaskSpec,
        kind: str,
        started: datetime,
        disk: DiskUsage,
        result: ScanResult | None = None,
        users: tuple[UserUsageRow, ...] = (),
    ) -> ScanRecord:
        return ScanRecord(
            run_id=str(uuid.uuid4()),
            task_name=task.name,
            hostname=self.settings.hostname,
            target_path=task.target_path,
            kind=kind,
            status="ok",
            started_at=started,
            finished_at=utcnow(),
            disk_total=disk.total,
            disk_used=disk.used,
            disk_available=disk.available,
            disk_use_percent=disk.percent,
            **totals_of(result),
            errors=result.errors if result is not None else 0,
            users=users,
        )

    def _store(self, record: ScanRecord, outcome: TaskOutcome) -> int | None:
        """Store the record in one transaction, or spool it; returns the scan id."""
        if self.database is not None:
            try:
                with self.database.session() as session:
                    return store_scan(session, record)
            except OperationalError as exc:
                log.error("storing task %s failed (%s); spooling", record.task_name, exc.orig)
        path = spool.spool_record(self.settings.state_dir, record)
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
            record = ScanRecord(
                run_id=str(uuid.uuid4()),
                task_name=task.name,
                hostname=self.settings.hostname,
                target_path=task.target_path,
                kind=kind,
                status="failed",
                started_at=utcnow(),
                finished_at=utcnow(),
                message=reason,
            )
            try:
                with self.database.session() as session:
                    store_scan(session, record)
            except SQLAlchemyError as exc:
                log.error("could not record the failure of task %s: %s", task.name, exc)
        return outcome

    def _log_admin_mail(self, sent: AdminMail) -> None:
        """The mail log holds every mail attempted, the administrators' summary too
        (task ``*``: it is about the whole run). Not when the database is down:
        that is usually what the mail is about, and the log file has it."""
        if self.database is None:
            return
        from dkmonitor.notify import maillog

        try:
            with self.database.session() as session:
                maillog.record(
                    session, scan_id=None, task_name="*", hostname=self.settings.hostname,
                    username="", address=sent.recipients, kind="admin", subject=sent.subject,
                    body=sent.body, error=sent.error, created_at=utcnow(),
                )
        except SQLAlchemyError as exc:
            log.warning("could not write the administrators' mail to the mail log: %s", exc)

    def finish(self) -> RunReport:
        """Mail the administrators about failures; close the database."""
        failures = []
        unmailed = []
        for outcome in self.report.outcomes:
            if outcome.status in ("failed", "spooled") and outcome.message:
                failures.append(outcome.message)
            if outcome.clean is not None and outcome.clean.error:
                failures.append(f"task {outcome.task.name}: {outcome.clean.error}")
            if outcome.notify is not None:
                summary = outcome.notify.summary()
                if summary:
                    failures.append(summary)
                if outcome.notify.no_passwd:
                    unmailed.append(
                        f"task {outcome.task.name}: not mailed, no passwd entry: "
                        + ", ".join(outcome.notify.no_passwd)
                    )
        if failures and self.settings.email.enabled and not self.dry_run:
            from dkmonitor.notify.step import mail_admins

            sent = mail_admins(self.settings, self.settings.hostname, failures + unmailed)
            if sent is not None:
                self._log_admin_mail(sent)
                if sent.error:
                    log.error(sent.error)
                    self.report.messages.append(sent.error)
                    self.report.failed = True
        auto_purge(None if self.dry_run else self.database, self.settings, self.report.outcomes)
        if self.database is not None:
            self.database.dispose()
        return self.report


def _check_mail_templates(settings: Settings) -> None:
    """A broken template fails the run up front (exit 2), before any mail goes out."""
    if settings.email.enabled:
        from dkmonitor.notify.step import check_templates

        check_templates(settings)


def run_tasks(
    settings: Settings,
    kind: str,
    names: tuple[str, ...] = (),
    *,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
) -> RunReport:
    """`run quick|full [TASK...]`: this host's tasks, one after the other."""
    _check_mail_templates(settings)
    runner = Runner(settings, dry_run=dry_run, progress=progress)
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
) -> RunReport:
    """`run path DIR`: an unsaved task, stored under the name ``path:DIR``."""
    _check_mail_templates(settings)
    runner = Runner(settings, dry_run=dry_run, progress=progress)
    if not dry_run:
        runner.connect()
    runner.run(task, "full")
    return runner.finish()
