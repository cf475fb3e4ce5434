"""Directories on the way to a destination: created safely, checked before use.

The relocation tree (and, for ``restore``, the target) is reached one
component at a time without following symlinks, and every directory passed
is *checked* before anything is put below it: a hostile user who pre-creates
``{relocation}/{host}/scratch/<victim>`` must not decide where the victim's
files land or be able to read them there. A directory that fails the check
raises ``Refused`` (the act fails, is journaled and the run exits 1); it is
never "fixed" (no chown/chmod of something a user controls).

Two policies:

- ``RELOCATION``: the tree dkmonitor builds. Every directory must belong to
  the owner it was created for (or to root), never be writable by others,
  and be group-writable only where the source directory was, for the same
  group. Directories are created that way: ``{host}`` and the mirror of the
  target's own path are root's 0755 (``/scratch`` may be 1777), a
  world-writable directory below loses its write bit for others.
- ``TARGET``: directories ``restore`` reuses in the target, which users
  manage. They must belong to the expected owner or to root, be
  group-writable only for the expected group, and not be writable by others
  unless the sticky bit protects the entries.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from dkmonitor.clean.fsops import FULL_ERRNOS, DestinationFull, DirStat, Unsafe, open_dir_at

RELOCATION, TARGET = "relocation", "target"


class Refused(Exception):
    """A directory on the way is not safe to use; the message names it."""


def root_dir(name: str) -> DirStat:
    """A directory above any user's own: root's (dkmonitor's own user's), 0755."""
    return DirStat(name, os.geteuid(), os.getegid(), 0o755)


def mirrored(d: DirStat) -> DirStat:
    """The relocation copy of a source directory: same owner, group and mode, never o+w.

    A world-writable source directory (``/scratch/shared``, 1777) is mirrored
    without the write bit for others (and without the sticky bit, which then
    means nothing): strangers could otherwise plant directories in it. Group
    write stays: it is a grant the owner made to a named group, and the check
    below makes sure such a directory keeps that very group.
    """
    mode = d.mode
    if mode & stat.S_IWOTH:
        mode &= ~(stat.S_IWOTH | stat.S_ISVTX)
    return DirStat(d.name, d.uid, d.gid, mode & 0o7777)


def check_dir(st: os.stat_result, want: DirStat, policy: str, where: str) -> None:
    """Raise Refused unless the directory ``st`` is safe to put ``want``'s files in."""
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{where} is not a directory")
    if st.st_uid not in (want.uid, 0, os.geteuid()):
        raise Refused(
            f"{where} belongs to uid {st.st_uid}, not to uid {want.uid} or root "
            "(created by someone else?)"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWGRP and not (want.mode & stat.S_IWGRP and st.st_gid == want.gid):
        if policy == RELOCATION or st.st_gid != want.gid:
            raise Refused(f"{where} is writable by group {st.st_gid} (mode {mode:04o})")
    if policy == RELOCATION:
        if mode & stat.S_IWOTH:
            raise Refused(f"{where} is writable by others (mode {mode:04o})")
    elif mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise Refused(f"{where} is writable by others without the sticky bit (mode {mode:04o})")


@dataclass(frozen=True)
class Chain:
    """Where a chain starts: the root's fd and absolute path, and the rules below it."""

    root_fd: int
    root_path: str
    policy: str
    expected_dev: int | None = None


def ensure_checked(chain: Chain, dirs: Sequence[DirStat]) -> int:
    """Open root/dirs..., creating what is missing, checking every directory passed.

    Returns the fd of the last directory (the caller closes it). Raises
    Refused, Unsafe (a symlink or mount point on the way), DestinationFull
    or OSError; nothing is created below a directory that failed its check.
    """
    fd = os.dup(chain.root_fd)
    where = chain.root_path.rstrip("/")
    try:
        for d in dirs:
            where = f"{where}/{d.name}"
            try:
                try:
                    child = open_dir_at(fd, d.name, chain.expected_dev)
                except FileNotFoundError:
                    child = _make_dir(fd, d, chain.expected_dev)
            except Unsafe as exc:  # a symlink or a mount point planted on the way
                raise Refused(f"{_printable(where)}: {exc}") from None
            os.close(fd)
            fd = child
            check_dir(os.fstat(fd), d, chain.policy, _printable(where))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_dir(parent_fd: int, d: DirStat, expected_dev: int | None) -> int:
    try:
        os.mkdir(d.name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        return open_dir_at(parent_fd, d.name, expected_dev)  # raced: checked by the caller
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise DestinationFull(f"cannot create directory {d.name!r}: {exc.strerror}") from None
        raise
    fd = open_dir_at(parent_fd, d.name, expected_dev)
    try:
        if os.fstat(fd).st_uid == os.geteuid():  # ours: give it its owner and mode
            os.fchown(fd, d.uid, d.gid)
            os.fchmod(fd, d.mode)
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EPERM:
            raise Refused(f"cannot give directory {d.name!r} its owner: {exc.strerror}") from None
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
