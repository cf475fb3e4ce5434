"""Settling the journal rows a crash left ``pending``: where is each file now?

A row is pending when its intent was committed but its completion was not
(kill -9, power cut, the database gone in the middle). Before a task cleans
again (and before ``restore``), each such row is settled by looking at the
files, through directory fds without following symlinks, as the act does:

- the temporary copy the intent named is removed if it is still there;
- delete: the checked file (same device and inode) still at its path ->
  ``interrupted`` (nothing happened); otherwise ``done``;
- move / restore: only at the source -> ``interrupted``; only at the
  destination -> ``done``; at both (a cross-filesystem copy was placed but
  the source not yet removed) -> the two are compared byte for byte and, if
  identical, the source is removed and the row is ``done``; if not, both are
  kept and the row ``failed`` for a person to look at; at neither -> ``failed``
  (its owner removed it).

Every settled row is committed at once, so a crash during reconciliation is
settled again by the next run. Rows that cannot be settled (their directory
cannot be entered safely, the database fails) stay pending, and the cleaner
refuses to act until they are settled.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.clean.fsops import FILE_READ_FLAGS, Unsafe, lstat_at, open_chain, same_file
from dkmonitor.clean.journal import (
    DELETE,
    DONE,
    FAILED,
    INTERRUPTED,
    MOVE,
    PENDING,
    Completion,
    complete,
)
from dkmonitor.db.engine import Database
from dkmonitor.db.models import Action
from dkmonitor.taskspec import TaskSpec

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass
class Reconciled:
    done: int = 0
    interrupted: int = 0
    failed: int = 0
    temps_removed: int = 0
    problems: list[str] = field(default_factory=list)  # rows left pending, and why


class _Cannot(Exception):
    """This row cannot be settled now; it stays pending."""


def pending_count(database: Database, task_name: str, hostname: str) -> int:
    with database.session() as session:
        return session.scalar(
            select(func.count()).select_from(Action).where(
                Action.outcome == PENDING, Action.hostname == hostname,
                Action.task_name == task_name,
            )
        ) or 0


def reconcile_task(database: Database, task: TaskSpec, hostname: str) -> Reconciled:
    """Settle every pending row of ``task`` on ``hostname`` (call under the task lock)."""
    result = Reconciled()
    with database.session() as session:
        rows = list(session.scalars(
            select(Action).where(Action.outcome == PENDING, Action.hostname == hostname,
                                 Action.task_name == task.name).order_by(Action.id)
        ))
        session.expunge_all()
    if not rows:
        return result
    log.warning("task %s: %d action(s) left unfinished by an interrupted run: reconciling",
                task.name, len(rows))
    settler = _Settler(task, hostname, result)
    for row in rows:
        try:
            outcome, reason = settler.settle(row)
        except (_Cannot, Unsafe, OSError) as exc:
            result.problems.append(f"{_show(bytes(row.path))}: {exc}")
            continue
        try:
            with database.session() as session:
                restores = row.restores_id if row.action != MOVE else None
                complete(session, Completion(row.id, outcome, reason, restores_id=restores))
        except SQLAlchemyError as exc:
            result.problems.append(f"cannot write the journal: {str(exc).splitlines()[0]}")
            break
        setattr(result, outcome, getattr(result, outcome) + 1)
        log.info("reconciled %s of %s: %s (%s)", row.action, _show(bytes(row.path)), outcome,
                 reason)
    return result


@dataclass
class _Settler:
    task: TaskSpec
    hostname: str
    result: Reconciled

    def settle(self, row: Action) -> tuple[str, str]:
        path = os.fsdecode(bytes(row.path))
        ident = (row.file_dev, row.file_ino)
        if row.action == DELETE:
            at = self._locate(self.task.target_path, path, same_dev=True)
            if at is not None and _is(at, ident):
                return INTERRUPTED, "the run stopped before the delete: the file is still there"
            return DONE, "deleted (confirmed by the next run after an interruption)"
        dest = os.fsdecode(bytes(row.destination or b""))
        if row.action == MOVE:
            src_root, dst_root = self.task.target_path, _relocation_root(dest, path, self.hostname)
        else:
            src_root, dst_root = _relocation_root(path, dest, self.hostname), self.task.target_path
        src = self._locate(src_root, path, same_dev=row.action == MOVE)
        dst = self._locate(dst_root, dest, same_dev=row.action != MOVE)
        try:
            if dst is not None and row.temp_path:
                self._remove_temp(dst[0], os.path.basename(os.fsdecode(bytes(row.temp_path))))
            return self._where(src, dst, ident)
        finally:
            for at in (src, dst):
                if at is not None:
                    os.close(at[0])

    def _where(
        self, src: tuple[int, str] | None, dst: tuple[int, str] | None,
        ident: tuple[int | None, int | None],
    ) -> tuple[str, str]:
        at_source = src is not None and _is(src, ident)
        at_dest = dst is not None and _regular(dst) is not None
        if at_source and at_dest:
            assert src is not None and dst is not None
            s, d = lstat_at(*src), lstat_at(*dst)
            if same_file(s, d) or _identical(src, dst, s, d):
                os.unlink(src[1], dir_fd=src[0])
                os.fsync(src[0])
                return DONE, "completed by the next run: the copy was in place, the source removed"
            return FAILED, ("interrupted with the file at both places, and they differ: "
                            "both kept for a person to decide")
        if at_source:
            return INTERRUPTED, "the run stopped before the file was moved: it stays where it was"
        if at_dest:
            return DONE, "moved (confirmed by the next run after an interruption)"
        return FAILED, "the file is at neither place now (removed by its owner?)"

    def _locate(self, root: str, path: str, *, same_dev: bool) -> tuple[int, str] | None:
        """(fd of the parent directory, name), None when that directory is gone."""
        root = root.rstrip("/") or "/"
        if not path.startswith(root + "/"):
            raise _Cannot(f"not under {root}")
        parts = path[len(root) + 1:].split("/")
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            dev = os.fstat(root_fd).st_dev if same_dev else None
            fd, _ = open_chain(root_fd, parts[:-1], dev)
        except FileNotFoundError:
            return None
        finally:
            os.close(root_fd)
        return fd, parts[-1]

    def _remove_temp(self, dir_fd: int, name: str) -> None:
        try:
            st = lstat_at(dir_fd, name)
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            os.unlink(name, dir_fd=dir_fd)
            self.result.temps_removed += 1
            log.info("removed the temporary copy %s left by an interrupted run", name)


def _relocation_root(relocated: str, original: str, hostname: str) -> str:
    mirror = f"/{hostname}{os.path.dirname(original)}"
    directory = os.path.dirname(relocated)
    if not directory.endswith(mirror):
        raise _Cannot(f"{relocated} does not mirror {original}")
    return directory[: -len(mirror)] or "/"


def _regular(at: tuple[int, str]) -> os.stat_result | None:
    try:
        st = lstat_at(*at)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _is(at: tuple[int, str], ident: tuple[int | None, int | None]) -> bool:
    st = _regular(at)
    return st is not None and (st.st_dev, st.st_ino) == ident


def _identical(
    a: tuple[int, str], b: tuple[int, str], sa: os.stat_result, sb: os.stat_result
) -> bool:
    if sa.st_size != sb.st_size:
        return False
    fds = []
    try:
        for (dir_fd, name), st in ((a, sa), (b, sb)):
            fd = os.open(name, FILE_READ_FLAGS | getattr(os, "O_NOATIME", 0), dir_fd=dir_fd)
            fds.append(fd)
            if not same_file(os.fstat(fd), st):
                return False
        offset = 0
        while True:
            one, two = os.pread(fds[0], _CHUNK, offset), os.pread(fds[1], _CHUNK, offset)
            if one != two:
                return False
            if not one:
                return True
            offset += len(one)
    finally:
        for fd in fds:
            os.close(fd)


def _show(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")
