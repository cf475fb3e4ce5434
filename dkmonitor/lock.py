"""Per-task run locks, so cron never runs the same task twice at once.

``fcntl.flock`` on a file in the local state directory: the kernel drops the
lock when the holder exits, however it dies, so a stale lock file never
blocks a later run. The holder's pid is written into the file only to make
the "already running" line useful. Lock files are created 0600 in a 0700
directory, never through a symlink (dkmonitor.safefs).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from dkmonitor.safefs import open_checked_dir, open_private


class AlreadyRunning(Exception):
    def __init__(self, name: str, pid: str) -> None:
        super().__init__(name, pid)
        self.name = name
        self.pid = pid


def lock_path(state_dir: Path, name: str) -> Path:
    return state_dir / "locks" / (quote(name, safe="") + ".lock")


@contextmanager
def task_lock(state_dir: Path, name: str) -> Iterator[None]:
    """Hold the lock of task ``name`` for the duration of the block.

    Raises AlreadyRunning at once (never waits) when another process holds it.
    """
    path = lock_path(state_dir, name)
    dir_fd = open_checked_dir(path.parent)
    try:
        fd = open_private(path.name, os.O_RDWR | os.O_CREAT, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(name, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
