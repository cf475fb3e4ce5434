"""Creating dkmonitor's own files and directories without trusting what others planted.

dkmonitor runs as root, and its log and outbox directories may sit where
users can write (a shared /tmp, a project area). Creating a file there the
naive way follows whatever symlink a user put in its place, and writes root's
data wherever that points. So, as root:

- a directory dkmonitor writes into must resolve to a path whose every
  directory is owned by root and not writable by others (a sticky /tmp is
  fine above it), and it must itself be writable by root alone;
- files are created relative to a descriptor of that checked directory, with
  ``O_NOFOLLOW`` (and ``O_EXCL`` for new names), mode 0600;
- directories dkmonitor creates are 0700.

For other users only the modes apply: they own what they point it at.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class UnsafePath(OSError):
    """A directory that somebody other than root could change under us."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(errno.EPERM, reason, str(path))


def _as_root() -> bool:
    return os.geteuid() == 0


def make_private_dir(path: str | Path, *, tighten: bool = False) -> None:
    """Create ``path`` and any missing parents with mode 0700.

    ``tighten``: an existing directory we own with group/other bits loses them
    (the state directory, which holds nothing anybody else should read).
    """
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", directory) from None
    if tighten:
        info = os.lstat(path)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & PRIVATE_DIR)


def unsafe_reason(path: str | Path, *, leaf_strict: bool = True) -> str | None:
    """Why root must not write into directory ``path``; None when it may (or not root).

    ``leaf_strict`` False: ``path`` is only where a new directory is about to be
    made, so a sticky world-writable one (/tmp) is fine, as above it.
    """
    if not _as_root():
        return None
    planted = _planted_symlink(os.path.abspath(path))
    if planted is not None:
        return planted
    real = os.path.realpath(path)
    info = os.stat(real)
    if not stat.S_ISDIR(info.st_mode):
        return f"{real} is not a directory"
    if leaf_strict and (info.st_uid != 0 or info.st_mode & 0o022):
        return f"{real} must be owned by root and writable by root only"
    parent = real if not leaf_strict else os.path.dirname(real)
    while True:
        above = os.stat(parent)
        sticky = bool(above.st_mode & stat.S_ISVTX)
        if above.st_uid != 0 or (above.st_mode & 0o022 and not sticky):
            return f"{parent} (on the way to {path}) is writable by users other than root"
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)


def _planted_symlink(path: str) -> str | None:
    """A symlink on ``path`` that someone other than root made or could replace.

    Following such a link lets a user choose the directory root writes into
    (``/tmp/logs -> /home/victim``); only links owned by root, in directories
    only root can write, are followed.
    """
    prefix = "/"
    for part in path.strip("/").split("/"):
        if not part:
            continue
        here = os.path.join(prefix, part)
        info = os.lstat(here)
        if stat.S_ISLNK(info.st_mode):
            holder = os.stat(prefix)
            if info.st_uid != 0 or holder.st_uid != 0 or holder.st_mode & 0o022:
                return f"{here} is a symlink that users other than root can change"
            here = os.path.realpath(here)
        prefix = here
    return None


def open_checked_dir(path: str | Path, *, create: bool = True) -> int:
    """A descriptor of directory ``path`` (created 0700 if missing), checked as above."""
    if create and not os.path.isdir(path):
        existing = os.path.abspath(path)
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        reason = unsafe_reason(existing, leaf_strict=False)
        if reason is not None:
            raise UnsafePath(path, f"unsafe directory: {reason}")
        make_private_dir(path)
    reason = unsafe_reason(path)
    if reason is not None:
        raise UnsafePath(path, f"unsafe directory: {reason}")
    return os.open(
        os.path.realpath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    )


def open_private(name: str, flags: int, *, dir_fd: int | None = None) -> int:
    """Open (or create, 0600) ``name`` without following a symlink at it.

    As root the result must be a regular file owned by root with one link (not
    a user's file, nor a hard link to someone's file); an existing file we own
    is brought to 0600.
    """
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(name, "not a regular file")
        if _as_root() and (info.st_uid != 0 or info.st_nlink > 1):
            raise UnsafePath(name, "not root's own file (owner or hard links); refusing it")
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    finally:
        view.release()


def write_private_file(directory: str | Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` atomically, 0600, through a checked directory.

    A temporary name is created with O_EXCL|O_NOFOLLOW, synced, and renamed over
    ``name`` (a rename replaces a planted symlink, it never follows it).
    """
    dir_fd = open_checked_dir(directory)
    temp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
    finally:
        os.close(dir_fd)
    return Path(directory) / name
