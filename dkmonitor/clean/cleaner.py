"""One task's clean-up: select candidates, re-check each, act, journal, know when to stop.

``Cleaner.open`` refuses up front (CleanRefused, nothing touched) when the
relocation path conflicts with the target (checked again at run time: a
symlink may have been changed since the task was created), when the target
or relocation path cannot be opened, or when there is no database to
journal into. ``act`` handles one candidate and is public so tests can
change the tree between selection and action.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Self

from dkmonitor.clean.deleter import delete_file
from dkmonitor.clean.fsops import DestinationFull, DirStat, Unsafe, open_chain
from dkmonitor.clean.journal import (
    DEFAULT_BATCH,
    DELETE,
    DONE,
    FAILED,
    MOVE,
    SKIPPED,
    ActionRecord,
    Journal,
    JournalError,
)
from dkmonitor.clean.limits import Breaker, Budget, PurgeWatch
from dkmonitor.clean.mover import Mover
from dkmonitor.clean.select import (
    DEFAULT_CHUNK,
    Candidate,
    SelectOptions,
    candidate_batches,
    iter_old_files,
)
from dkmonitor.clean.verify import AgeRule, recheck
from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.scan.disk import DiskUsage, disk_usage
from dkmonitor.scan.users import username_for
from dkmonitor.taskrun import AlteredFiles, CleanSummary, TaskRun
from dkmonitor.taskspec import relocation_conflict

log = logging.getLogger(__name__)


class CleanRefused(Exception):
    """Cleaning cannot start safely; the message names task and path."""


class _Stop(Exception):
    """Internal: end the loop (the summary already says why)."""


@dataclass
class Cleaner:
    run: TaskRun
    settings: Settings
    root_fd: int
    root_dev: int
    mover: Mover | None
    journal: Journal | None
    measure: Callable[[], DiskUsage] | None
    chunk: int = DEFAULT_CHUNK
    summary: CleanSummary = field(default_factory=CleanSummary)

    def __post_init__(self) -> None:
        task = self.run.task
        clean = self.settings.clean
        self.summary.dry_run = self.run.dry_run
        self.mode = MOVE if self.mover is not None else DELETE
        self.rule = AgeRule(task.old_file_threshold, self.run.now, task.age_basis)
        self.budget = Budget(clean.max_files_per_run, clean.max_bytes_per_run)
        self.breaker = Breaker(clean.max_failure_percent, clean.min_actions_before_breaker)
        self.purge = PurgeWatch(task.purge_target_percent, self.run.disk, self.measure)
        self.select_options = SelectOptions(
            target=task.target_path,
            old_days=task.old_file_threshold,
            now=self.run.now,
            age_basis=task.age_basis,
            exclude=self.settings.scan.exclude,
        )

    # ------------------------------------------------------------ set-up
    @classmethod
    def open(
        cls,
        database: Database | None,
        settings: Settings,
        run: TaskRun,
        *,
        measure: Callable[[str], DiskUsage] = disk_usage,
        chunk: int = DEFAULT_CHUNK,
        journal_batch: int = DEFAULT_BATCH,
    ) -> Self:
        task = run.task
        moving = bool(task.relocation_path) and not task.delete_old_files
        if moving:
            assert task.relocation_path is not None
            conflict = relocation_conflict(task.target_path, task.relocation_path)
            if conflict:
                raise CleanRefused(
                    f"task {task.name}: relocation path {task.relocation_path} {conflict}; "
                    "nothing was moved"
                )
        journal = None
        if not run.dry_run:
            if database is None:
                raise CleanRefused(
                    f"task {task.name}: the database is unavailable and every action must be "
                    "journaled; nothing was moved or deleted"
                )
            journal = Journal(database, task.name, run.hostname, run.scan_id, journal_batch)
        try:
            root_fd = os.open(task.target_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise CleanRefused(
                f"task {task.name}: cannot open target {task.target_path}: {exc.strerror}"
            ) from None
        try:
            root_dev = os.fstat(root_fd).st_dev
            mover = None
            if moving:
                assert task.relocation_path is not None
                try:
                    mover = Mover(task.relocation_path, run.hostname, task.target_path, root_dev)
                except OSError as exc:
                    raise CleanRefused(
                        f"task {task.name}: cannot use relocation path "
                        f"{task.relocation_path}: {exc.strerror}; nothing was moved"
                    ) from None
        except BaseException:
            os.close(root_fd)
            raise
        target = task.target_path
        return cls(
            run=run,
            settings=settings,
            root_fd=root_fd,
            root_dev=root_dev,
            mover=mover,
            journal=journal,
            measure=None if run.dry_run else (lambda: measure(target)),
            chunk=chunk,
        )

    def close(self) -> None:
        """Flush the journal and release the fds; journal errors land in the summary."""
        try:
            if self.journal is not None:
                self.journal.flush()
        except JournalError as exc:
            self.summary.error = self.summary.error or str(exc)
        finally:
            if self.mover is not None:
                self.mover.close()
                self.mover = None
            if self.root_fd >= 0:
                os.close(self.root_fd)
                self.root_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ the loop
    def batches(self) -> Iterator[list[Candidate]]:
        chunk = self.chunk
        if self.budget.max_files:
            chunk = min(chunk, self.budget.max_files)
        return candidate_batches(lambda: iter_old_files(self.root_fd, self.select_options), chunk)

    def clean(self) -> CleanSummary:
        try:
            for batch in self.batches():
                for cand in batch:
                    reason = self._should_stop()
                    if reason:
                        self.summary.stopped = reason
                        return self.summary
                    if not self.budget.fits(cand.size):
                        continue
                    self.act(cand)
        except _Stop:
            pass
        except JournalError as exc:
            self.summary.error = str(exc)
            self.summary.stopped = "the action journal could not be written"
        if self.budget.passed_over:
            log.info("%s: %d files passed over: larger than what max_bytes_per_run left",
                     self.run.task.name, self.budget.passed_over)
            if self.summary.stopped is None:
                self.summary.stopped = (
                    f"max_bytes_per_run ({self.budget.max_bytes} bytes) reached: "
                    f"{self.budget.passed_over} larger files left for the next run"
                )
        return self.summary

    def _should_stop(self) -> str | None:
        return self.budget.exhausted() or self.purge.reached()

    def act(self, cand: Candidate) -> ActionRecord:
        """Re-check one candidate and move/delete it (or, on a dry run, count it)."""
        try:
            dir_fd, dirs = open_chain(self.root_fd, cand.parent, self.root_dev)
        except FileNotFoundError:
            return self._record(self.mode, SKIPPED, cand, reason="its directory vanished")
        except Unsafe as exc:
            return self._record(
                self.mode, SKIPPED, cand,
                reason=f"a directory on its path is no longer safe to enter: {exc}",
            )
        except OSError as exc:
            return self._record(self.mode, FAILED, cand, reason=f"cannot open its directory: {exc}")
        try:
            return self._act_in(dir_fd, dirs, cand)
        finally:
            os.close(dir_fd)

    def _act_in(self, dir_fd: int, dirs: list[DirStat], cand: Candidate) -> ActionRecord:
        st, reason = recheck(dir_fd, cand, self.rule, moving=self.mode == MOVE)
        if st is None:
            return self._record(self.mode, SKIPPED, cand, reason=reason)
        if self.run.dry_run:
            destination = None
            if self.mover is not None:
                destination = f"{self.mover.destination_dir(cand)}/{cand.name}"
            return self._record(self.mode, DONE, cand, destination=destination)
        if self.mode == MOVE:
            assert self.mover is not None
            try:
                destination = self.mover.move(dir_fd, dirs, cand, st)
            except DestinationFull as exc:
                return self._destination_full(dir_fd, cand, str(exc))
            except Unsafe as exc:
                return self._record(MOVE, SKIPPED, cand, reason=str(exc))
            except OSError as exc:
                return self._record(MOVE, FAILED, cand, reason=_os_error(exc))
            return self._record(MOVE, DONE, cand, destination=destination)
        return self._delete(dir_fd, cand)

    def _delete(self, dir_fd: int, cand: Candidate) -> ActionRecord:
        try:
            delete_file(dir_fd, cand)
        except OSError as exc:
            return self._record(DELETE, FAILED, cand, reason=_os_error(exc))
        return self._record(DELETE, DONE, cand)

    def _destination_full(self, dir_fd: int, cand: Candidate, why: str) -> ActionRecord:
        task = self.run.task
        self._record(
            MOVE, FAILED, cand, reason=f"relocation path {task.relocation_path} is full: {why}"
        )
        if not task.delete_when_full:
            self.summary.error = (
                f"task {task.name}: relocation path {task.relocation_path} is full; moves "
                "stopped and every remaining file kept (delete_when_full is off)"
            )
            self.summary.stopped = f"relocation path {task.relocation_path} is full"
            raise _Stop
        log.warning("%s: relocation path %s is full: deleting the remaining old files "
                    "(delete_when_full)", task.name, task.relocation_path)
        self.mode = DELETE
        st, reason = recheck(dir_fd, cand, self.rule, moving=False)
        if st is None:
            return self._record(DELETE, SKIPPED, cand, reason=reason)
        return self._delete(dir_fd, cand)

    # ------------------------------------------------------------ bookkeeping
    def _record(
        self,
        action: str,
        outcome: str,
        cand: Candidate,
        *,
        reason: str | None = None,
        destination: str | None = None,
    ) -> ActionRecord:
        path = cand.abs_path(self.run.task.target_path)
        username = username_for(cand.uid)
        rec = ActionRecord(
            action=action,
            outcome=outcome,
            path=os.fsencode(path),
            destination=os.fsencode(destination) if destination is not None else None,
            size=cand.size,
            uid=cand.uid,
            username=username,
            reason=reason,
        )
        self._count(rec)
        self._log(rec, path, destination)
        if self.journal is not None:
            self.journal.record(rec)
        tripped = self.breaker.tripped()
        if tripped and self.summary.error is None:
            self.summary.error = f"task {self.run.task.name}: {tripped}"
            self.summary.stopped = tripped
            raise _Stop
        return rec

    def _count(self, rec: ActionRecord) -> None:
        if rec.outcome == SKIPPED:
            self.summary.skipped += 1
            return
        ok = rec.outcome == DONE
        self.breaker.record(ok)
        if not ok:
            self.summary.failed += 1
            return
        per_user = self.summary.moved if rec.action == MOVE else self.summary.deleted
        altered = per_user.setdefault(rec.uid or 0, AlteredFiles())
        altered.files += 1
        altered.bytes += rec.size
        self.budget.spend(rec.size)
        frees = rec.action == DELETE or (self.mover is not None and self.mover.frees_target_space)
        self.purge.freed(rec.size if frees else 0)

    def _log(self, rec: ActionRecord, path: str, destination: str | None) -> None:
        shown = repr(path)[1:-1]
        prefix = "would " if self.run.dry_run else ""
        if rec.outcome == DONE:
            where = f" -> {repr(destination)[1:-1]}" if destination else ""
            log.info("%s%s %s%s (%d bytes, %s)", prefix, rec.action, shown, where, rec.size,
                     rec.username)
        elif rec.outcome == SKIPPED:
            log.info("skipped %s of %s: %s", rec.action, shown, rec.reason)
        else:
            log.warning("failed to %s %s: %s", rec.action, shown, rec.reason)


def _os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)
