"""One task's clean-up: select candidates, re-check each, act, journal, know when to stop.

``Cleaner.open`` refuses up front (CleanRefused, nothing touched) when the relocation
path conflicts with the target (checked again at run time: a symlink may have changed),
when the target or relocation path cannot be opened, or when there is no database to
journal into. ``act`` is public so tests can change the tree before the action.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Self

from dkmonitor.announce.record import AnnounceRecord
from dkmonitor.clean.actionlog import log_action, os_error_text
from dkmonitor.clean.deleter import delete_file
from dkmonitor.clean.dirs import Refused
from dkmonitor.clean.exemptions import ExemptRules, load_rules
from dkmonitor.clean.fsops import DestinationFull, DirStat, Unsafe, open_chain
from dkmonitor.clean.inuse import FileId, open_for_writing
from dkmonitor.clean.journal import (
    DEFAULT_BATCH,
    DELETE,
    DONE,
    FAILED,
    MOVE,
    SKIPPED,
    ActionRecord,
    Completion,
    Journal,
    JournalError,
)
from dkmonitor.clean.limits import Breaker, Budget, PurgeWatch
from dkmonitor.clean.mover import Mover, Plan, SourceKept
from dkmonitor.clean.preflight import CleanRefused, check_relocation, open_journal
from dkmonitor.clean.select import DEFAULT_CHUNK, Candidate, SelectOptions
from dkmonitor.clean.sources import EMERGENCY, Sources, watch_factory
from dkmonitor.clean.verify import AgeRule, recheck
from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.scan.disk import DiskUsage, disk_usage
from dkmonitor.scan.users import username_for
from dkmonitor.taskrun import AlteredFiles, CleanSummary, TaskRun

log = logging.getLogger(__name__)

IN_USE = "in use: open for writing by a process on this host"


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
    in_use: frozenset[FileId] = frozenset()
    exempt: ExemptRules = ExemptRules()  # `dkmonitor exempt`: never selected
    record: AnnounceRecord | None = None  # --notice-days: act only on what it announced
    summary: CleanSummary = field(default_factory=CleanSummary)

    def __post_init__(self) -> None:
        task = self.run.task
        clean = self.settings.clean
        self.summary.dry_run = self.run.dry_run
        self.mode = MOVE if self.mover is not None else DELETE
        self.rule = AgeRule(task.old_file_threshold, self.run.now, task.age_basis)
        self.budget = Budget(clean.max_files_per_run, clean.max_bytes_per_run)
        self.breaker = Breaker(clean.max_failure_percent, clean.min_actions_before_breaker)
        # --clean-always cleans by age: every eligible file, whatever the disk use
        purge_target = None if task.clean_always else task.purge_target_percent
        self.purge = PurgeWatch(purge_target, self.run.disk, self.measure)
        self.select_options = SelectOptions(
            target=task.target_path,
            old_days=task.old_file_threshold,
            now=self.run.now,
            age_basis=task.age_basis,
            exclude=self.settings.scan.exclude,
            exempt=self.exempt,
        )
        chunk = self.chunk
        if self.budget.max_files:
            chunk = min(chunk, self.budget.max_files)
        self.sources = Sources(task, self.root_fd, self.select_options, chunk, self.record)

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
        record: AnnounceRecord | None = None,
    ) -> Self:
        task = run.task
        moving = bool(task.relocation_path) and not task.delete_old_files
        if moving:
            check_relocation(task.name, task.target_path, task.relocation_path or "")
        journal = None if run.dry_run else open_journal(database, run, journal_batch)
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
            in_use=open_for_writing(),
            exempt=load_rules(database, task.name, task.target_path, run.started_at),
            record=record,
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
        """The candidates, batch by batch, in the order they are acted on."""
        for batch, watch in self.sources.batches(self.purge, watch_factory(self.measure)):
            self.purge = watch  # the emergency phase stops at its own watermark
            yield batch

    def clean(self) -> CleanSummary:
        try:
            self._loop()
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
        if self.summary.failed and self.summary.error is None:
            # one failed move or delete is already something a person must see
            self.summary.error = (
                f"task {self.run.task.name}: {self.summary.failed} file(s) could not be "
                f"{'moved' if self.mover is not None else 'deleted'} (see the log and "
                "the action journal)"
            )
        return self.summary

    def _loop(self) -> None:
        try:
            self._batches()
        finally:
            self.summary.emergency = self.sources.emergency

    def _batches(self) -> None:
        for batch in self.batches():
            for cand in batch:
                reason = self.budget.exhausted() or self.purge.reached()
                if reason:
                    self.summary.stopped = reason
                    return
                if not self.budget.fits(cand.size):
                    continue
                self.act(cand)

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
        if (st.st_dev, st.st_ino) in self.in_use:
            return self._record(self.mode, SKIPPED, cand, reason=IN_USE)
        if self.run.dry_run:
            destination = None
            if self.mover is not None:
                destination = f"{self.mover.destination_dir(cand)}/{cand.name}"
            return self._record(self.mode, DONE, cand, destination=destination)
        if self.mode == MOVE:
            return self._move(dir_fd, dirs, cand, st)
        return self._delete(dir_fd, cand, st)

    def _move(
        self, dir_fd: int, dirs: list[DirStat], cand: Candidate, st: os.stat_result
    ) -> ActionRecord:
        assert self.mover is not None
        try:
            plan = self.mover.plan(dirs, cand)
        except DestinationFull as exc:
            return self._destination_full(dir_fd, cand, st, None, str(exc))
        except Refused as exc:
            return self._record(MOVE, FAILED, cand, reason=f"refused: {exc}")
        except (Unsafe, OSError) as exc:
            return self._record(MOVE, FAILED, cand, reason=os_error_text(exc))
        try:
            action_id = self._begin(MOVE, cand, st, plan)
            try:
                self.mover.execute(plan, dir_fd, cand, st)
            except DestinationFull as exc:
                return self._destination_full(dir_fd, cand, st, action_id, str(exc))
            except Unsafe as exc:
                return self._finish(action_id, MOVE, SKIPPED, cand, reason=str(exc))
            except SourceKept as exc:
                return self._finish(action_id, MOVE, FAILED, cand, reason=str(exc))
            except OSError as exc:
                return self._finish(action_id, MOVE, FAILED, cand, reason=os_error_text(exc))
            return self._finish(action_id, MOVE, DONE, cand, destination=plan.destination)
        finally:
            plan.close()

    def _delete(self, dir_fd: int, cand: Candidate, st: os.stat_result) -> ActionRecord:
        action_id = self._begin(DELETE, cand, st, None)
        try:
            delete_file(dir_fd, cand)
        except OSError as exc:
            return self._finish(action_id, DELETE, FAILED, cand, reason=os_error_text(exc))
        return self._finish(action_id, DELETE, DONE, cand)

    def _destination_full(
        self, dir_fd: int, cand: Candidate, st: os.stat_result, action_id: int | None, why: str
    ) -> ActionRecord:
        task = self.run.task
        reason = f"relocation path {task.relocation_path} is full: {why}"
        if not task.delete_when_full:
            self._end(action_id, MOVE, FAILED, cand, reason=reason)
            self.summary.error = (
                f"task {task.name}: relocation path {task.relocation_path} is full; moves "
                "stopped and every remaining file kept (delete_when_full is off)"
            )
            self.summary.stopped = f"relocation path {task.relocation_path} is full"
            raise _Stop
        self._end(action_id, MOVE, SKIPPED, cand, reason=f"{reason}; deleted instead")
        log.warning("%s: relocation path %s is full: deleting the remaining old files "
                    "(delete_when_full)", task.name, task.relocation_path)
        self.mode = DELETE
        st2, reason2 = recheck(dir_fd, cand, self.rule, moving=False)
        if st2 is None:
            return self._record(DELETE, SKIPPED, cand, reason=reason2)
        return self._delete(dir_fd, cand, st2)

    # ------------------------------------------------------------ bookkeeping
    def _begin(self, action: str, cand: Candidate, st: os.stat_result, plan: Plan | None) -> int:
        """Commit the intent; JournalError (no act without a durable row) ends the run."""
        assert self.journal is not None
        rec = ActionRecord(
            action=action,
            outcome=SKIPPED,  # replaced by pending in the row
            path=os.fsencode(cand.abs_path(self.run.task.target_path)),
            destination=os.fsencode(plan.destination) if plan is not None else None,
            size=cand.size,
            uid=cand.uid,
            username=username_for(cand.uid),
            temp=os.fsencode(plan.temp_path) if plan is not None else None,
            dev=st.st_dev,
            ino=st.st_ino,
        )
        return self.journal.begin(rec)

    def _end(self, action_id: int | None, action: str, outcome: str, cand: Candidate,
             *, reason: str | None = None) -> ActionRecord:
        if action_id is None:
            return self._record(action, outcome, cand, reason=reason)
        return self._finish(action_id, action, outcome, cand, reason=reason)

    def _finish(
        self, action_id: int, action: str, outcome: str, cand: Candidate, *,
        reason: str | None = None, destination: str | None = None,
    ) -> ActionRecord:
        assert self.journal is not None
        self.journal.finish(Completion(
            action_id, outcome, reason,
            destination=os.fsencode(destination) if destination is not None else None,
        ))
        return self._account(action, outcome, cand, reason, destination)

    def _record(
        self, action: str, outcome: str, cand: Candidate, *,
        reason: str | None = None, destination: str | None = None,
    ) -> ActionRecord:
        rec = self._account(action, outcome, cand, reason, destination)
        if self.journal is not None:
            self.journal.record(rec)
        return rec

    def _account(
        self, action: str, outcome: str, cand: Candidate, reason: str | None,
        destination: str | None,
    ) -> ActionRecord:
        path = cand.abs_path(self.run.task.target_path)
        rec = ActionRecord(
            action=action,
            outcome=outcome,
            path=os.fsencode(path),
            destination=os.fsencode(destination) if destination is not None else None,
            size=cand.size,
            uid=cand.uid,
            username=username_for(cand.uid),
            reason=reason,
        )
        self._count(rec)
        if rec.outcome == DONE and self.record is not None and not self.run.dry_run:
            self.record.took(cand.dev, cand.ino)  # gone: it leaves this run's lists
        log_action(rec, path, destination, dry_run=self.run.dry_run)
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
        tallies = [per_user, self.summary.unannounced] if self.sources.phase == EMERGENCY else [
            per_user]
        for tally in tallies:
            altered = tally.setdefault(rec.uid or 0, AlteredFiles())
            altered.files += 1
            altered.bytes += rec.size
        self.budget.spend(rec.size)
        frees = rec.action == DELETE or (self.mover is not None and self.mover.frees_target_space)
        self.purge.freed(rec.size if frees else 0)
