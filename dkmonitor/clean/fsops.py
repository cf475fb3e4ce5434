"""Race-safe filesystem primitives: everything goes through directory fds.

The cleaner runs as root over trees that users can write to while it runs.
The classic attack (tmpwatch/tmpreaper) swaps a directory for a symlink
between the moment a file is chosen and the moment it is removed, so that
root follows the link and removes ``/etc/shadow``. Everything here therefore
opens one path component at a time with ``O_NOFOLLOW`` relative to a
directory fd it already trusts, and acts with ``dir_fd=`` on the last
component only. No function here ever resolves a full path below a root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO swapped in at the last moment must never block.
FILE_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TEMP_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 20
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
MAX_SUFFIX = 1000
TEMP_PREFIX = ".dkmonitor-"  # temporary copies: never left behind, but recognisable
_RENAME_NOREPLACE = 1


class Unsafe(Exception):
    """The path is not what was checked (symlink, mount point, replaced): skip it."""


class DestinationFull(Exception):
    """The destination filesystem (or quota) is full; nothing partial was left."""


@dataclass(frozen=True)
class DirStat:
    """A directory on the way down: its name and the owner/mode to mirror."""

    name: str
    uid: int
    gid: int
    mode: int


def _load_renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def lstat_at(dir_fd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def open_dir_at(parent_fd: int, name: str, expected_dev: int | None = None) -> int:
    """Open a subdirectory without following a symlink or crossing a mount.

    Raises Unsafe when ``name`` is a symlink or not a directory, or lives on
    another device than ``expected_dev``; FileNotFoundError when it is gone.
    """
    if name in ("", ".", "..") or "/" in name:
        raise Unsafe(f"refusing path component {name!r}")
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Unsafe(f"{name!r} is a symlink or not a directory") from None
        raise
    if expected_dev is not None:
        st = os.fstat(fd)
        if st.st_dev != expected_dev:
            os.close(fd)
            raise Unsafe(f"{name!r} is a mount point (another filesystem)")
    return fd


def open_chain(
    root_fd: int, parts: Sequence[str], expected_dev: int | None = None
) -> tuple[int, list[DirStat]]:
    """Open root/parts[0]/parts[1]/... one component at a time.

    Returns the fd of the last directory (the caller closes it) and the
    owner/mode of each directory passed, for mirroring them elsewhere.
    """
    fd = os.dup(root_fd)
    stats: list[DirStat] = []
    try:
        for name in parts:
            child = open_dir_at(fd, name, expected_dev)
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            stats.append(DirStat(name, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
    except BaseException:
        os.close(fd)
        raise
    return fd, stats


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """rename(2) that fails with FileExistsError instead of replacing ``dst``.

    Uses renameat2(RENAME_NOREPLACE); where the filesystem does not support
    it, link + unlink (which also never replaces, and never loses the file:
    a crash in between leaves two names, not zero).
    """
    if _renameat2 is not None:
        result = _renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst),
                            _RENAME_NOREPLACE)
        if result == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), src)
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)


def suffixed(name: str, n: int) -> str:
    return name if n == 0 else f"{name}.{n}"


def free_name(dir_fd: int, name: str) -> str:
    """``name``, or ``name.1``, ``name.2``... whichever does not exist in dir_fd now.

    Chosen before the intent is journaled, so the journal names the exact
    destination; the rename itself never replaces (a name taken meanwhile
    fails the act, it is not overwritten).
    """
    for n in range(MAX_SUFFIX):
        candidate = suffixed(name, n)
        try:
            lstat_at(dir_fd, candidate)
        except FileNotFoundError:
            return candidate
    raise FileExistsError(errno.EEXIST, f"{MAX_SUFFIX} names already taken", name)


def temp_name() -> str:
    """A fresh name for a temporary copy; journaled before the copy is made."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"


def open_source_file(dir_fd: int, name: str, expected: os.stat_result) -> int:
    """Open a regular file for reading, proving it is the inode that was checked.

    O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO swapped in from
    hanging us, and the fstat comparison catches any other substitution.
    """
    flags = FILE_READ_FLAGS | getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        fd = os.open(name, FILE_READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unsafe("became a symlink") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or not same_file(st, expected):
        os.close(fd)
        raise Unsafe("was replaced by another file")
    return fd


def copy_file(
    src_fd: int, src_st: os.stat_result, dst_dir_fd: int, final_name: str, temp: str
) -> None:
    """Copy an open file into dst_dir as ``final_name``, by way of ``temp``.

    Written to the temporary name first, fsynced, size-checked, given the
    source's owner, mode, xattrs and times, then renamed into place without
    replacing anything; the destination directory is fsynced. On any failure
    the temporary file is removed, so a partial copy is never left (a crash
    may leave it: the journaled intent names it, and the next run removes
    it). Raises DestinationFull on ENOSPC/EDQUOT, FileExistsError when the
    name is taken.
    """
    try:
        out = os.open(temp, TEMP_WRITE_FLAGS, 0o600, dir_fd=dst_dir_fd)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise DestinationFull(exc.strerror or "no space left") from None
        raise
    placed = False
    try:
        try:
            _copy_data(src_fd, out, src_st.st_size)
            os.fsync(out)
            if os.fstat(out).st_size != src_st.st_size:
                raise OSError(errno.EIO, f"the copy is not {src_st.st_size} bytes long")
            _copy_metadata(src_fd, src_st, out)
            os.fsync(out)
        finally:
            os.close(out)
        rename_noreplace(dst_dir_fd, temp, dst_dir_fd, final_name)
        placed = True
        os.fsync(dst_dir_fd)
    except OSError as exc:
        if not placed:
            remove_quietly(dst_dir_fd, temp)
        if exc.errno in FULL_ERRNOS:
            raise DestinationFull(exc.strerror or "no space left") from None
        raise
    except BaseException:
        if not placed:
            remove_quietly(dst_dir_fd, temp)
        raise


def _copy_data(src_fd: int, out_fd: int, size: int) -> None:
    """Copy the first ``size`` bytes: the written extents as data, the holes as holes.

    Scratch holds sparse files (VM images, core dumps, preallocated output); a
    byte-for-byte copy would allocate their whole apparent size on the archive,
    and one 1 TiB image with 1 GiB written could fill it. SEEK_DATA/SEEK_HOLE
    find the extents; ``ftruncate`` gives the copy its length. A source that
    shrinks meanwhile raises EIO (and one that is written to is caught by the
    caller's size/mtime recheck).
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src_fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here to the end
                break
            if exc.errno != errno.EINVAL:
                raise
            start, end = offset, size  # no hole support here: all of it is data
        else:
            end = min(os.lseek(src_fd, start, os.SEEK_HOLE), size)
        _copy_range(src_fd, out_fd, start, end)
        offset = end
    os.ftruncate(out_fd, size)


def _copy_range(src_fd: int, out_fd: int, start: int, end: int) -> None:
    position = start
    while position < end:
        chunk = os.pread(src_fd, min(COPY_CHUNK, end - position), position)
        if not chunk:
            raise OSError(errno.EIO, "the file shrank while it was being copied")
        view = memoryview(chunk)
        while view:
            written = os.pwrite(out_fd, view, position)
            view = view[written:]
            position += written


def _copy_metadata(src_fd: int, src_st: os.stat_result, out_fd: int) -> None:
    # chown first: it clears set-uid/gid bits, which fchmod then restores.
    os.fchown(out_fd, src_st.st_uid, src_st.st_gid)
    os.fchmod(out_fd, stat.S_IMODE(src_st.st_mode))
    copy_xattrs(src_fd, out_fd)
    os.utime(out_fd, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))


def copy_xattrs(src_fd: int, out_fd: int) -> None:
    """Copy extended attributes (ACLs included) where both filesystems have them."""
    try:
        names = os.listxattr(src_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        try:
            os.setxattr(out_fd, name, os.getxattr(src_fd, name))
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA):
                continue  # the destination cannot hold this attribute
            raise


def remove_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
