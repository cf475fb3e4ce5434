"""Directories reached by file descriptor, at any depth, with a bounded number of fds.

Why: a path longer than PATH_MAX (4096 bytes: about 2000 levels of one-letter
names) cannot be opened, so a walk by path would see a deep directory as one
unreadable entry and a user could hide any amount of data below it. The walk
therefore opens every directory with ``openat(parent_fd, name)`` and never
builds a path for the kernel to resolve; paths are only built for messages,
path exclusions and work handed to another worker.

Which fds stay open: a walked directory keeps its fd only while some of its
subdirectories are still waiting on the stack (``Dir.waiting``), since those
are opened relative to it; the last one to be opened releases it. In an
ordinary tree that is at most one fd per level of the current branch. A deep
tree that branches at every level would need one per level, so at most
``FD_BUDGET`` are kept: past it the fd opened longest ago (the shallowest, whose
subdirectories the depth-first walk reaches last) is closed, and when it is
needed again it is reopened from its nearest open ancestor (or the root), name
by name, caching the directories on the way that still have work waiting. The
cost of that reopen is the distance to an open ancestor, paid only in trees
deeper than the budget; nothing is ever recursive.

Every reopened directory must still be the one first seen (same st_dev and
st_ino), exactly as a freshly opened one must match its parent's lstat: a
directory swapped for another (or a symlink: O_NOFOLLOW) mid-scan cannot lead
the walk outside the target.
"""

from __future__ import annotations

import errno
import os

from dkmonitor.scan.stats import TOP_DIR_DEPTH

# Work handed to another worker is reopened name by name from the root, so its
# cost grows with its depth: only directories this shallow are handed over (a
# tree whose only parallelism lies deeper is walked by one worker, which is
# better than paying depth x directories openat calls).
DONATE_MAX_DEPTH = 64

# Enough for any ordinary tree's branch (so nothing is ever reopened there),
# far below the usual RLIMIT_NOFILE of 1024 even with a few workers' pipes.
FD_BUDGET = 128

# A path this short (bytes) the kernel resolves in one open (PATH_MAX is 4096).
_SHORT_PATH = 4000

OPEN_ROOT = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
OPEN_SUBDIR = OPEN_ROOT | os.O_NOFOLLOW


class Replaced(OSError):
    """A directory is no longer the one its parent listed (or the root was swapped)."""

    def __init__(self) -> None:
        super().__init__(errno.ESTALE, "replaced during the scan; skipped")


class Dir:
    """A directory being walked: how to reach it again, and its fd while it is useful.

    ``parent is None`` marks the target itself (``name`` is then its absolute
    path, the only path ever given to the kernel). ``dev``/``ino`` are 0 where
    unknown (the intermediate directories of work handed over by another
    worker: only the directory handed over is checked, which is enough).
    """

    __slots__ = ("parent", "name", "dev", "ino", "fd", "waiting", "depth", "key")

    parent: Dir | None
    depth: int  # levels below the root
    key: str  # where its files count for the top directories (stats.TOP_DIR_DEPTH)

    def __init__(self, parent: Dir | None, name: str, dev: int, ino: int) -> None:
        self.parent = parent
        if parent is None:
            self.depth = 0
            self.key = ""
        else:
            self.depth = depth = parent.depth + 1
            if depth > TOP_DIR_DEPTH:
                self.key = parent.key
            else:
                self.key = parent.key + "/" + name if parent.key else name
        self.name = name
        self.dev = dev
        self.ino = ino
        self.fd = -1
        self.waiting = 0  # subdirectories on the stack, to be opened relative to this one

    def path(self) -> str:
        """The absolute path, for messages and path globs only (may exceed PATH_MAX)."""
        names: list[str] = []
        node: Dir | None = self
        while node is not None:
            names.append(node.name)
            node = node.parent
        names.reverse()
        if len(names) == 1:
            return names[0]
        return names[0].rstrip("/") + "/" + "/".join(names[1:])

    def prefix(self) -> str:
        """``path() + "/"`` (the root ``/`` already ends with one)."""
        path = self.path()
        return path if path.endswith("/") else path + "/"


def printable(path: str) -> str:
    """A path safe to log, mail and store as UTF-8 (undecodable bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def error_line(path: str, exc: OSError) -> str:
    """The scan's error line for ``path``: its printable form and the reason."""
    return f"{printable(path)}: {exc.strerror or exc}"


def errno_line(path: str, number: int) -> str:
    """The same line as :func:`error_line`, from the bare errno the compiled loop reports."""
    return f"{printable(path)}: {os.strerror(number)}"


def child_path(parent: Dir | None, name: str) -> str:
    """Path of the entry ``name`` of ``parent`` (``name`` itself for the root)."""
    return name if parent is None else parent.prefix() + name


def open_checked(parent_fd: int | None, node: Dir, path: bytes | None = None) -> int:
    """Open ``node`` (relative to ``parent_fd``; the root, or ``path``, by path) and
    check its identity."""
    if path is not None:
        fd = os.open(path, OPEN_SUBDIR)
    elif parent_fd is None:
        fd = os.open(node.name, OPEN_ROOT)
    else:
        fd = os.open(node.name, OPEN_SUBDIR, dir_fd=parent_fd)
    if node.ino:
        opened = os.fstat(fd)
        if opened.st_ino != node.ino or opened.st_dev != node.dev:
            os.close(fd)
            raise Replaced()
    return fd


class DirFds:
    """The open directory fds of one walker, at most ``budget`` of them."""

    def __init__(self, budget: int | None = None) -> None:
        budget = FD_BUDGET if budget is None else budget
        if budget < 2:  # a reopen keeps the directory it stands in while opening the next
            raise ValueError("the fd budget must be at least 2")
        self.budget = budget
        self._open: dict[Dir, None] = {}  # insertion order = the order they were opened

    def keep(self, node: Dir, fd: int) -> None:
        """``node`` keeps ``fd`` (its subdirectories are waiting); evict past the budget."""
        node.fd = fd
        opened = self._open
        opened[node] = None
        if len(opened) > self.budget:
            oldest = next(iter(opened))
            del opened[oldest]
            os.close(oldest.fd)
            oldest.fd = -1

    def release(self, node: Dir) -> None:
        """Close ``node``'s fd (nothing left waiting on it)."""
        if node.fd >= 0:
            del self._open[node]
            os.close(node.fd)
            node.fd = -1

    def open(self, node: Dir) -> int:
        """Open ``node`` and check its identity (raises OSError / :class:`Replaced`).

        Relative to its parent's fd when the parent has one (the usual case).
        A parent without one (work handed over by another worker, or evicted
        past the budget) is not reopened when the path is short enough for the
        kernel: the directory is opened by path, once, and its identity check
        catches any ancestor swapped meanwhile; only past PATH_MAX is the way
        reopened name by name.
        """
        parent = node.parent
        if parent is None:
            return open_checked(None, node)
        if parent.fd >= 0:
            return open_checked(parent.fd, node)
        if node.ino:
            path = os.fsencode(node.path())
            if len(path) < _SHORT_PATH:
                return open_checked(None, node, path)
        return open_checked(self.fd_of(parent), node)

    def fd_of(self, node: Dir) -> int:
        """``node``'s fd, reopened from its nearest open ancestor if it was evicted.

        Raises ``OSError`` (:class:`Replaced` for a swapped directory) when the
        way back no longer leads to the same directories.
        """
        if node.fd >= 0:
            return node.fd
        chain: list[Dir] = []
        base: Dir | None = node
        while base is not None and base.fd < 0:
            chain.append(base)
            base = base.parent
        fd = base.fd if base is not None else None
        passing = -1  # an fd opened on the way and not kept: closed once past it
        try:
            for step in reversed(chain):
                opened = open_checked(fd, step)
                if passing >= 0:
                    os.close(passing)
                    passing = -1
                if step is node or step.waiting:
                    self.keep(step, opened)
                else:
                    passing = opened
                fd = opened
        finally:
            if passing >= 0:
                os.close(passing)
        return node.fd

    def close_all(self) -> None:
        for node in list(self._open):
            self.release(node)
