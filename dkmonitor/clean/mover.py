"""Moving one re-checked file to ``{relocation}/{hostname}{absolute source path}``.

A move is two steps so that the journal can name everything before the act:
``plan`` opens (creating and checking, see dkmonitor.clean.dirs) the
destination directory and picks the exact destination name and temporary
copy name; the cleaner commits the intent; ``execute`` acts.

Same filesystem: a rename that never replaces an existing name, followed by
a check that the inode that arrived is the one that was checked (if a user
swapped the name in the instant between, the stranger is put back). A
rename refused with EXDEV (the relocation path is a bind mount of the
target's filesystem: same device, another mount) falls back to the copy.
Across filesystems: copy to the journaled temporary name, fsync, compare
sizes, give it owner/mode/xattrs/times, rename into place, and only then
unlink the source (after checking once more that it did not change while
being copied). A source that cannot be removed (immutable, read-only mount)
gets its copy removed again: copies never pile up. A full destination raises
DestinationFull with nothing partial left behind and the source untouched.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from dkmonitor.clean.dirs import RELOCATION, Chain, ensure_checked, mirrored, root_dir
from dkmonitor.clean.fsops import (
    DirStat,
    Unsafe,
    copy_file,
    free_name,
    lstat_at,
    open_source_file,
    rename_noreplace,
    same_file,
    temp_name,
)
from dkmonitor.clean.select import Candidate

log = logging.getLogger(__name__)


class SourceKept(Exception):
    """The copy was made but the source cannot be removed: copy removed, file kept."""


def _fsync_dir(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass


@dataclass
class Plan:
    """Where one file goes: the open destination directory and the exact names."""

    dst_fd: int
    dst_dir: str
    name: str
    temp: str

    @property
    def destination(self) -> str:
        return f"{self.dst_dir}/{self.name}"

    @property
    def temp_path(self) -> str:
        return f"{self.dst_dir}/{self.temp}"

    def close(self) -> None:
        if self.dst_fd >= 0:
            os.close(self.dst_fd)
            self.dst_fd = -1


class Mover:
    """Holds the relocation root open for a run; ``plan`` then ``execute`` per file."""

    def __init__(self, relocation_path: str, hostname: str, target_path: str, target_dev: int):
        self.relocation_path = relocation_path.rstrip("/") or "/"
        self.hostname = hostname
        self.target_path = target_path.rstrip("/")
        # The relocation path is the administrator's: opened as configured
        # (the conflict checks have already compared it with the target).
        self.root_fd = os.open(relocation_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.root_dev = os.fstat(self.root_fd).st_dev
        except BaseException:
            os.close(self.root_fd)
            raise
        # {host} and the mirror of the target's own path are above every user's
        # directory: root's 0755, whatever the originals are (/scratch is 1777).
        names = [hostname, *(n for n in self.target_path.split("/") if n)]
        self._prefix = [root_dir(name) for name in names]
        self.frees_target_space = self.root_dev != target_dev

    def close(self) -> None:
        os.close(self.root_fd)

    def destination_dir(self, cand: Candidate) -> str:
        base = f"{self.relocation_path.rstrip('/')}/{self.hostname}{self.target_path}"
        return "/".join((base, *cand.parent))

    def plan(self, src_dirs: Sequence[DirStat], cand: Candidate) -> Plan:
        """Open (create, check) the destination directory and choose the names.

        Raises Refused (a directory on the way is not safe), DestinationFull
        or OSError.
        """
        chain = Chain(self.root_fd, self.relocation_path, RELOCATION, self.root_dev)
        dst_fd = ensure_checked(chain, [*self._prefix, *(mirrored(d) for d in src_dirs)])
        try:
            name = free_name(dst_fd, cand.name)
        except BaseException:
            os.close(dst_fd)
            raise
        return Plan(dst_fd, self.destination_dir(cand), name, temp_name())

    def execute(self, plan: Plan, src_dir_fd: int, cand: Candidate, st: os.stat_result) -> None:
        """Move the checked file to ``plan.destination``.

        Raises DestinationFull, Unsafe (skip: the file is not what was
        checked, nothing lost), SourceKept or OSError (failure, source kept).
        """
        if os.fstat(plan.dst_fd).st_dev == st.st_dev:
            try:
                self._rename(src_dir_fd, plan, cand, st)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                log.debug("rename of %r gave EXDEV (bind mount?): copying", cand.relative())
        self._copy(src_dir_fd, plan, cand, st)

    def _rename(self, src_dir_fd: int, plan: Plan, cand: Candidate, st: os.stat_result) -> None:
        rename_noreplace(src_dir_fd, cand.name, plan.dst_fd, plan.name)
        arrived = lstat_at(plan.dst_fd, plan.name)
        if not same_file(arrived, st):
            # Swapped in the instant between check and rename: put it back.
            try:
                rename_noreplace(plan.dst_fd, plan.name, src_dir_fd, cand.name)
            except OSError as exc:
                log.error("a file swapped in during a move of %s stays at %s: %s",
                          cand.relative(), plan.destination, exc)
            raise Unsafe("was replaced during the move (put back)")
        _fsync_dir(plan.dst_fd)
        _fsync_dir(src_dir_fd)

    def _copy(self, src_dir_fd: int, plan: Plan, cand: Candidate, st: os.stat_result) -> None:
        src = open_source_file(src_dir_fd, cand.name, st)
        try:
            copy_file(src, st, plan.dst_fd, plan.name, plan.temp)
        finally:
            os.close(src)
        try:
            now = lstat_at(src_dir_fd, cand.name)
            unchanged = (
                same_file(now, st)
                and now.st_size == st.st_size
                and now.st_mtime_ns == st.st_mtime_ns
            )
        except FileNotFoundError:
            unchanged = False
        if not unchanged:
            _unlink_copy(plan)
            raise Unsafe("changed while being copied (copy removed, source kept)")
        try:
            os.unlink(cand.name, dir_fd=src_dir_fd)
        except OSError as exc:
            _unlink_copy(plan)
            raise SourceKept(
                f"the source cannot be removed ({exc.strerror or exc}): "
                "its copy was removed again, the file stays where it is"
            ) from None
        _fsync_dir(src_dir_fd)


def _unlink_copy(plan: Plan) -> None:
    os.unlink(plan.name, dir_fd=plan.dst_fd)
    _fsync_dir(plan.dst_fd)
