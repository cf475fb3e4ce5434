"""Files open for writing by any process on this host, read once per run from /proc.

A file that is being written must not be moved (writes after a
cross-filesystem move land in the unlinked inode and are lost) or deleted.
``/proc/PID/fd/N`` gives the open file (its device and inode, by stat) and
``/proc/PID/fdinfo/N`` its open flags; a regular file opened O_WRONLY or
O_RDWR by anyone is "in use". The set is taken once when cleaning starts: a
file opened later is caught by the re-check only if it was also modified.
Processes that vanish or cannot be read while we look are simply passed over.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger(__name__)

FileId = tuple[int, int]  # (st_dev, st_ino)
_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


def open_for_writing(proc: str = "/proc") -> frozenset[FileId]:
    """(dev, ino) of every regular file some process here holds open for writing."""
    found: set[FileId] = set()
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError as exc:
        log.warning("cannot list %s (files in use cannot be recognised): %s", proc, exc)
        return frozenset()
    for pid in pids:
        found.update(_process_writes(f"{proc}/{pid}"))
    return frozenset(found)


def _process_writes(base: str) -> list[FileId]:
    try:
        fds = os.listdir(f"{base}/fd")
    except OSError:
        return []  # gone, or a kernel thread
    result = []
    for fd in fds:
        flags = _flags(f"{base}/fdinfo/{fd}")
        if flags is None or flags & os.O_ACCMODE not in _WRITE_MODES:
            continue
        try:
            st = os.stat(f"{base}/fd/{fd}")
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            result.append((st.st_dev, st.st_ino))
    return result


def _flags(path: str) -> int | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None
