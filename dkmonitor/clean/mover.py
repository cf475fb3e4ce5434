"""Moving one re-checked file to ``{relocation}/{hostname}{absolute source path}``.

Same filesystem: a rename that never replaces an existing name, followed by
a check that the inode that arrived is the one that was checked (if a user
swapped the name in the instant between, the stranger is put back).
Across filesystems: copy to a temporary name, fsync, compare sizes, give it
owner/mode/xattrs/times, rename into place, and only then unlink the source
(after checking once more that it did not change while being copied).
A full destination raises DestinationFull with nothing partial left behind
and the source untouched.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence

from dkmonitor.clean.fsops import (
    DirStat,
    Unsafe,
    copy_file,
    ensure_chain,
    lstat_at,
    open_source_file,
    rename_noreplace,
    rename_with_suffix,
    same_file,
)
from dkmonitor.clean.select import Candidate

log = logging.getLogger(__name__)


def _fsync_dir(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass


def _ancestors(target_path: str) -> list[DirStat]:
    """Owner and mode of each directory of the target path itself (/scratch, /scratch/proj)."""
    dirs: list[DirStat] = []
    current = ""
    for name in target_path.strip("/").split("/"):
        if not name:
            continue
        current = f"{current}/{name}"
        st = os.stat(current)
        dirs.append(DirStat(name, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
    return dirs


class Mover:
    """Holds the relocation root open for a run; one ``move`` per file."""

    def __init__(self, relocation_path: str, hostname: str, target_path: str, target_dev: int):
        self.relocation_path = relocation_path.rstrip("/") or "/"
        self.hostname = hostname
        self.target_path = target_path.rstrip("/")
        # The relocation path is the administrator's: opened as configured
        # (relocation_conflict has already compared the resolved paths).
        self.root_fd = os.open(relocation_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.root_dev = os.fstat(self.root_fd).st_dev
            host = DirStat(hostname, os.geteuid(), os.getegid(), 0o755)
            self._prefix = [host, *_ancestors(self.target_path)]
        except BaseException:
            os.close(self.root_fd)
            raise
        self.frees_target_space = self.root_dev != target_dev

    def close(self) -> None:
        os.close(self.root_fd)

    def destination_dir(self, cand: Candidate) -> str:
        base = f"{self.relocation_path.rstrip('/')}/{self.hostname}{self.target_path}"
        return "/".join((base, *cand.parent))

    def move(
        self, src_dir_fd: int, src_dirs: Sequence[DirStat], cand: Candidate, st: os.stat_result
    ) -> str:
        """Move the checked file; returns its new absolute path.

        Raises DestinationFull, Unsafe (skip: the file is not what was
        checked, nothing lost) or OSError (failure, source kept).
        """
        dst_fd = ensure_chain(self.root_fd, [*self._prefix, *src_dirs])
        try:
            if os.fstat(dst_fd).st_dev == st.st_dev:
                name = self._rename(src_dir_fd, dst_fd, cand, st)
            else:
                name = self._copy(src_dir_fd, dst_fd, cand, st)
        finally:
            os.close(dst_fd)
        return f"{self.destination_dir(cand)}/{name}"

    def _rename(self, src_dir_fd: int, dst_fd: int, cand: Candidate, st: os.stat_result) -> str:
        name = rename_with_suffix(src_dir_fd, cand.name, dst_fd, cand.name)
        arrived = lstat_at(dst_fd, name)
        if not same_file(arrived, st):
            # Swapped in the instant between check and rename: put it back.
            try:
                rename_noreplace(dst_fd, name, src_dir_fd, cand.name)
            except OSError as exc:
                log.error("a file swapped in during a move of %s stays at %s/%s: %s",
                          cand.relative(), self.destination_dir(cand), name, exc)
            raise Unsafe("was replaced during the move (put back)")
        _fsync_dir(dst_fd)
        _fsync_dir(src_dir_fd)
        return name

    def _copy(self, src_dir_fd: int, dst_fd: int, cand: Candidate, st: os.stat_result) -> str:
        src = open_source_file(src_dir_fd, cand.name, st)
        try:
            name = copy_file(src, st, dst_fd, cand.name, suffix=True)
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
            os.unlink(name, dir_fd=dst_fd)
            raise Unsafe("changed while being copied (copy removed, source kept)")
        os.unlink(cand.name, dir_fd=src_dir_fd)
        _fsync_dir(src_dir_fd)
        return name
