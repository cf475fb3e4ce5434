"""Undoing a task's moves from the journal: ``dkmonitor restore``.

The same safety rules as the moves, in the other direction: both trees are
entered one directory fd at a time without following symlinks (the mirrored
relocation tree belongs to the users as much as the target does), the
target's filesystem is never left, a file now at the original path is never
overwritten (the restore of that file is skipped and says so), and the
relocated copy is only taken if it is still the single-link regular file
of the same owner. Content, owner, mode, xattrs and times come back intact:
a rename on the same filesystem, otherwise the copy-fsync-check-rename of
``fsops.copy_file``. Each restore is journaled write-ahead like a move (an
intent row with action ``restore``, path = where it is taken from,
destination = where it goes back, committed before the act), completed
after, and marks the move's row ``restored_at``. A restore holds the task's
lock (no run of the task meanwhile) and first reconciles what an interrupted
run or restore left pending. Directories recreated or reused in the target
are checked like the relocation tree's (dkmonitor.clean.dirs, TARGET rules).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from dkmonitor.clean.dirs import TARGET, Chain, Refused, ensure_checked
from dkmonitor.clean.fsops import (
    DestinationFull,
    DirStat,
    Unsafe,
    copy_file,
    lstat_at,
    open_chain,
    open_source_file,
    rename_noreplace,
    same_file,
    temp_name,
)
from dkmonitor.clean.journal import (
    DONE,
    FAILED,
    RESTORE,
    SKIPPED,
    ActionRecord,
    Completion,
    Journal,
    JournalError,
    MovedFile,
    moved_files,
)
from dkmonitor.clean.reconcile import reconcile_task
from dkmonitor.config import Settings
from dkmonitor.db.engine import Database
from dkmonitor.db.tasks import get_task
from dkmonitor.lock import AlreadyRunning, task_lock
from dkmonitor.taskspec import TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreItem:
    """One file's fate, for the CLI to render (paths as str with surrogate escapes)."""

    original: str
    relocated: str
    outcome: str  # done | skipped | failed (on a dry run, done = would be restored)
    reason: str | None
    size: int
    username: str | None


@dataclass
class RestoreSummary:
    task: str
    dry_run: bool
    restored: int = 0
    bytes: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None  # set when the restore had to stop: exit 1

    def count(self, item: RestoreItem) -> None:
        if item.outcome == DONE:
            self.restored += 1
            self.bytes += item.size
        elif item.outcome == SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1


class _Skip(Exception):
    """This file is not restored; the message says why."""


class _Fail(Exception):
    """Restoring this file failed; the message says why."""


class _Full(Exception):
    """The target filesystem is full: stop restoring."""


def restore_task(
    database: Database,
    settings: Settings,
    task_name: str,
    *,
    username: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
    report: Callable[[RestoreItem], None] | None = None,
) -> RestoreSummary:
    """Move back what ``task_name`` moved on this host (not yet restored).

    ``since`` is naive UTC, like the journal. Raises TaskError for an
    unknown task; other problems end up in the summary.
    """
    with database.session() as session:
        task = get_task(session, task_name)
    summary = RestoreSummary(task=task.name, dry_run=dry_run)
    try:
        with task_lock(settings.state_dir, task.name):
            _restore_locked(database, settings, task, summary, username, since, report)
    except AlreadyRunning as busy:
        summary.error = f"task {task.name} is running (pid {busy.pid}); restore it afterwards"
    return summary


def _restore_locked(
    database: Database, settings: Settings, task: TaskSpec, summary: RestoreSummary,
    username: str | None, since: datetime | None,
    report: Callable[[RestoreItem], None] | None,
) -> None:
    dry_run = summary.dry_run
    if not dry_run:
        settled = reconcile_task(database, task, settings.hostname)
        if settled.problems:
            summary.error = (f"task {task.name}: unfinished actions of an interrupted run "
                             f"could not be reconciled: {settled.problems[0]}")
            return
    journal = None if dry_run else Journal(database, task.name, settings.hostname, None)
    try:
        restorer = _Restorer(task, settings.hostname, dry_run, journal)
    except OSError as exc:
        summary.error = f"task {task.name}: cannot open target {task.target_path}: {exc.strerror}"
        return
    try:
        for moved in moved_files(database, task.name, settings.hostname,
                                 username=username, since=since):
            item, stop = restorer.restore(moved)
            summary.count(item)
            _log(item, dry_run)
            if report is not None:
                report(item)
            if journal is not None:
                if restorer.action_id is not None:
                    journal.finish(Completion(restorer.action_id, item.outcome, item.reason,
                                              restores_id=moved.id))
                else:
                    journal.record(_record(moved, item))
            if stop:
                summary.error = stop
                break
        if journal is not None:
            journal.flush()
    except JournalError as exc:
        summary.error = str(exc)
    finally:
        restorer.close()


def _record(moved: MovedFile, item: RestoreItem) -> ActionRecord:
    return ActionRecord(
        action=RESTORE,
        outcome=item.outcome,
        path=moved.destination,
        destination=moved.path,
        size=moved.size,
        uid=moved.uid,
        username=moved.username,
        reason=item.reason,
        restores_id=moved.id,
    )


def _log(item: RestoreItem, dry_run: bool) -> None:
    original = repr(item.original)[1:-1]
    if item.outcome == DONE:
        log.info("%srestore %s", "would " if dry_run else "", original)
    elif item.outcome == SKIPPED:
        log.info("not restoring %s: %s", original, item.reason)
    else:
        log.warning("failed to restore %s: %s", original, item.reason)


@dataclass
class _Restorer:
    task: TaskSpec
    hostname: str
    dry_run: bool
    journal: Journal | None = None
    action_id: int | None = None  # the intent of the file being restored, once committed
    _reloc_fds: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.target = self.task.target_path.rstrip("/")
        self.root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root_dev = os.fstat(self.root_fd).st_dev

    def close(self) -> None:
        for fd in self._reloc_fds.values():
            os.close(fd)
        self._reloc_fds.clear()
        os.close(self.root_fd)

    def restore(self, moved: MovedFile) -> tuple[RestoreItem, str | None]:
        original, relocated = os.fsdecode(moved.path), os.fsdecode(moved.destination)
        stop = None
        self.action_id = None
        try:
            self._restore(original, relocated, moved)
            outcome, reason = DONE, None
        except _Skip as exc:
            outcome, reason = SKIPPED, str(exc)
        except _Fail as exc:
            outcome, reason = FAILED, str(exc)
        except _Full as exc:
            outcome, reason = FAILED, str(exc)
            stop = f"task {self.task.name}: target {self.target} is full: {exc}; restore stopped"
        except Unsafe as exc:
            outcome, reason = SKIPPED, str(exc)
        except OSError as exc:
            outcome, reason = FAILED, exc.strerror or str(exc)
        item = RestoreItem(original, relocated, outcome, reason, moved.size, moved.username)
        return item, stop

    def _restore(self, original: str, relocated: str, moved: MovedFile) -> None:
        if not original.startswith(self.target + "/"):
            raise _Skip(f"not under the task's target {self.target} any more")
        parts = original[len(self.target) + 1:].split("/")
        name, parent_parts = parts[-1], parts[:-1]
        reloc_dir, reloc_name = relocated.rsplit("/", 1)
        mirror = f"/{self.hostname}{os.path.dirname(original)}"
        if not reloc_dir.endswith(mirror) or not reloc_name:
            raise _Skip(f"{relocated} does not mirror the original path")
        reloc_root = reloc_dir[: -len(mirror)] or "/"
        reloc_parts = mirror.strip("/").split("/")

        try:
            src_fd, src_dirs = open_chain(self._reloc_fd(reloc_root), reloc_parts)
        except FileNotFoundError:
            raise _Skip("its directory in the relocation path is gone") from None
        except Unsafe as exc:
            raise _Skip(f"unsafe path in the relocation tree: {exc}") from None
        except OSError as exc:
            raise _Fail(f"cannot open {reloc_dir}: {exc.strerror}") from None
        try:
            st = self._check_relocated(src_fd, reloc_name, moved)
            mirrored = src_dirs[len(src_dirs) - len(parent_parts):] if parent_parts else []
            self._put_back(src_fd, reloc_name, st, mirrored, name, (original, moved))
        finally:
            os.close(src_fd)

    def _reloc_fd(self, root: str) -> int:
        if root not in self._reloc_fds:
            try:
                self._reloc_fds[root] = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise _Fail(f"cannot open relocation path {root}: {exc.strerror}") from None
        return self._reloc_fds[root]

    @staticmethod
    def _check_relocated(src_fd: int, reloc_name: str, moved: MovedFile) -> os.stat_result:
        try:
            st = lstat_at(src_fd, reloc_name)
        except FileNotFoundError:
            raise _Skip("the relocated file is gone") from None
        if not stat.S_ISREG(st.st_mode):
            raise _Skip("the relocated path is no longer a regular file")
        if st.st_nlink > 1:
            raise _Skip(f"the relocated file has {st.st_nlink} hard links")
        if moved.uid is not None and st.st_uid != moved.uid:
            raise _Skip(f"the relocated file is now owned by uid {st.st_uid}, not {moved.uid}")
        return st

    def _put_back(
        self, src_fd: int, reloc_name: str, st: os.stat_result, mirrored: list[DirStat],
        name: str, where: tuple[str, MovedFile],
    ) -> None:
        original, moved = where
        if self.dry_run:
            self._check_free(mirrored, name, original)
            return
        try:
            chain = Chain(self.root_fd, self.target, TARGET, self.root_dev)
            dst_fd = ensure_checked(chain, mirrored)
        except Refused as exc:
            raise _Fail(f"refused: {exc}") from None
        except DestinationFull as exc:
            raise _Full(str(exc)) from None
        except OSError as exc:
            raise _Fail(f"cannot create its directory: {exc.strerror}") from None
        try:
            if _exists(dst_fd, name):
                raise _Skip(f"{original} exists now; not overwritten")
            temp = temp_name()
            self._begin(moved, st, f"{os.path.dirname(original)}/{temp}")
            if os.fstat(dst_fd).st_dev == st.st_dev:
                self._rename_back(src_fd, reloc_name, st, dst_fd, name, original)
            else:
                self._copy_back(src_fd, reloc_name, st, (dst_fd, name, temp), original)
        finally:
            os.close(dst_fd)

    def _check_free(self, mirrored: list[DirStat], name: str, original: str) -> None:
        try:
            fd, _ = open_chain(self.root_fd, [d.name for d in mirrored], self.root_dev)
        except FileNotFoundError:
            return  # its directory would be recreated
        except Unsafe as exc:
            raise _Skip(f"unsafe path in the target: {exc}") from None
        try:
            if _exists(fd, name):
                raise _Skip(f"{original} exists now; not overwritten")
        finally:
            os.close(fd)

    @staticmethod
    def _rename_back(
        src_fd: int, reloc_name: str, st: os.stat_result, dst_fd: int, name: str, original: str
    ) -> None:
        try:
            rename_noreplace(src_fd, reloc_name, dst_fd, name)
        except FileExistsError:
            raise _Skip(f"{original} exists now; not overwritten") from None
        except OSError as exc:
            raise _Fail(exc.strerror or str(exc)) from None
        if not same_file(lstat_at(dst_fd, name), st):
            rename_noreplace(dst_fd, name, src_fd, reloc_name)
            raise _Skip("the relocated file was replaced during the restore (put back)")
        for fd in (dst_fd, src_fd):
            try:
                os.fsync(fd)
            except OSError:
                pass

    def _begin(self, moved: MovedFile, st: os.stat_result, temp: str) -> None:
        """Commit the restore's intent (JournalError: the restore stops, nothing done)."""
        if self.journal is None:
            return
        self.action_id = self.journal.begin(ActionRecord(
            action=RESTORE, outcome=SKIPPED, path=moved.destination, destination=moved.path,
            size=moved.size, uid=moved.uid, username=moved.username, restores_id=moved.id,
            temp=os.fsencode(temp), dev=st.st_dev, ino=st.st_ino,
        ))

    @staticmethod
    def _copy_back(
        src_fd: int, reloc_name: str, st: os.stat_result, dst: tuple[int, str, str],
        original: str,
    ) -> None:
        dst_fd, name, temp = dst
        try:
            fd = open_source_file(src_fd, reloc_name, st)
        except Unsafe as exc:
            raise _Skip(f"the relocated file {exc}") from None
        try:
            copy_file(fd, st, dst_fd, name, temp)
        except FileExistsError:
            raise _Skip(f"{original} exists now; not overwritten") from None
        except DestinationFull as exc:
            raise _Full(str(exc)) from None
        except OSError as exc:
            raise _Fail(exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        now = lstat_at(src_fd, reloc_name)
        if not (same_file(now, st) and now.st_mtime_ns == st.st_mtime_ns
                and now.st_size == st.st_size):
            os.unlink(name, dir_fd=dst_fd)
            raise _Skip("the relocated file changed while being copied back (copy removed)")
        os.unlink(reloc_name, dir_fd=src_fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        lstat_at(dir_fd, name)
    except FileNotFoundError:
        return False
    return True
