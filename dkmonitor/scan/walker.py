"""The directory walk: one ``lstat`` per entry, totals per owner, nothing kept per file.

This module is the loop over directories (open, check, hand work to idle
workers, progress); the loop over a directory's entries is elsewhere. The
per-entry loop is where a full scan spends its time (millions of
iterations). It exists twice, with identical results (tests/test_scan_compiled.py):

* ``dkmonitor.scan._dirscan`` (C, built at install time when a compiler is
  there): used by default. It leaves the walk to the kernel's own cost
  (getdents, one fstatat per entry): at 1M files a 2-worker scan takes
  ~0.5x find's time, against ~0.7x with the Python loop;
* ``pyloop.scan_python``: the reference and the fallback, written for
  CPython's sake (locals instead of attribute lookups, no function call per
  file, counters in lists, ``DirEntry.stat(follow_symlinks=False)`` as the
  single ``lstat``, made with ``fstatat`` relative to the open directory fd).

Either way no path is ever resolved by the kernel below the root: every
directory is opened relative to its parent's fd and every entry lstat'ed
relative to its directory's fd, so depth is unlimited (data 3000 levels down,
past PATH_MAX, is counted like any other) and fds stay within a budget
(dirfds.py says how). Pending directories are a plain stack of (parent,
name, st_dev, st_ino), so memory is bounded by the tree's breadth and depth,
not its size.

Names are ``str`` decoded with ``surrogateescape`` (what ``os.scandir`` on a
file descriptor yields), so non-UTF-8 names round-trip to the filesystem
unchanged; they are only made printable in error messages.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from dkmonitor.announce.spool import Spool
from dkmonitor.scan import dirfds
from dkmonitor.scan.age import AgeRule
from dkmonitor.scan.dirfds import (
    Dir,
    DirFds,
    child_path,
    errno_line,
    error_line,
)
from dkmonitor.scan.pyloop import scan_python
from dkmonitor.scan.stats import ScanOptions
from dkmonitor.scan.tally import Tally

try:  # the compiled per-directory loop (setup.py builds it when it can)
    from dkmonitor.scan import _dirscan
except ImportError:  # no compiler at install time: pyloop.py does the same
    _dirscan = None  # type: ignore[assignment]

COMPILED = _dirscan is not None

# Within this many nanoseconds of the old/not-old boundary, ask age.is_old
# itself, so the scanner and the cleaner can never disagree about a file.
_BOUNDARY_SLACK_NS = 10_000
TICK_SECONDS = 0.2

# The seam os.scandir fills; tests substitute a wrapper to reproduce races
# (a file deleted between readdir and lstat) deterministically.
Scandir = Callable[[int], Any]

# A directory handed between workers: its path (possibly past PATH_MAX: it is
# reopened name by name, never given to the kernel whole) and the
# (st_dev, st_ino) its parent's lstat saw, checked after opening.
Pending = tuple[str, int, int]
# A directory on a walker's stack: its parent (None for the root), its name
# (the root's absolute path for the root) and the (st_dev, st_ino) listed.
Item = tuple[Dir | None, str, int, int]


class Flag(Protocol):
    """A shared integer (multiprocessing RawValue) a worker polls once per directory."""

    value: int


@dataclass(frozen=True)
class WalkConfig:
    """Everything a walker needs; picklable so parallel workers get a copy."""

    root: str
    root_dev: int
    root_ino: int
    one_file_system: bool
    age: AgeRule
    exclude: tuple[str, ...]
    leave_out: frozenset[tuple[int, int]] = frozenset()  # (st_dev, st_ino) not to walk
    spools: tuple[int, ...] = ()  # one fd per worker: where its old files are spooled
    spool_in_memory: bool = False  # MPI ranks: old files go back with the tally instead

    @classmethod
    def build(
        cls, root: str, root_dev: int, options: ScanOptions, root_ino: int = 0,
        leave_out: frozenset[tuple[int, int]] = frozenset(), spools: tuple[int, ...] = (),
        spool_in_memory: bool = False,
    ) -> WalkConfig:
        """``root_ino`` 0: the root's identity is not checked when it is opened."""
        return cls(
            leave_out=leave_out,
            spools=spools,
            spool_in_memory=spool_in_memory,
            root=root,
            root_dev=root_dev,
            root_ino=root_ino,
            one_file_system=options.one_file_system,
            age=options.age,
            exclude=tuple(options.exclude),
        )


def _matcher(patterns: Iterable[str]) -> Callable[[str], Any] | None:
    """One compiled regex for a list of globs (fnmatch semantics, case-sensitive)."""
    patterns = list(patterns)
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


class Walker:
    """Walks directories into a :class:`Tally`.

    ``on_tick`` is called about every ``TICK_SECONDS`` (checked once per
    directory, so the cost is negligible); ``hungry``/``donate`` let a parallel
    worker hand the shallowest half of its pending directories to idle workers.
    """

    def __init__(
        self,
        config: WalkConfig,
        tally: Tally | None = None,
        on_tick: Callable[[Tally], None] | None = None,
        hungry: Flag | None = None,
        donate: Callable[[list[Pending]], None] | None = None,
        scandir: Scandir = os.scandir,
        spool: int | None = None,
        fd_budget: int | None = None,
    ) -> None:
        """``spool``: the fd this walker writes its old files to (announce/spool.py);
        ``fd_budget``: how many directory fds it may keep (dirfds.FD_BUDGET when None)."""
        self.config = config
        self.tally = tally if tally is not None else Tally()
        self.on_tick = on_tick
        self.hungry = hungry
        self.donate = donate
        self.scandir = scandir
        # A substituted scandir (the tests' race seam) needs the Python loop.
        self.compiled = COMPILED and scandir is os.scandir
        self.exclude_name = _matcher(p for p in config.exclude if "/" not in p)
        self.exclude_path = _matcher(p for p in config.exclude if "/" in p)
        self.excluding = self.exclude_name is not None or self.exclude_path is not None
        self.fds = DirFds(fd_budget)
        self.spool = Spool(spool, config.root) if spool is not None else (
            Spool(None, config.root) if config.spool_in_memory else None)
        self._root_dir = Dir(None, config.root, config.root_dev, config.root_ino)
        # The age arithmetic both loops share, computed once from the one rule.
        rule = config.age
        cut_ns = int((rule.now - rule.limit_seconds) * 1e9)
        self.now_ns = int(rule.now * 1e9)
        self.old_below = cut_ns - _BOUNDARY_SLACK_NS  # last use before this: surely old
        self.young_above = cut_ns + _BOUNDARY_SLACK_NS  # after this: surely not old

    def _exclusion(self, prefix: str) -> Callable[[str], bool]:
        """The compiled loop's test for an entry name in the directory ``prefix``."""
        by_name, by_path = self.exclude_name, self.exclude_path

        def excluded(name: str) -> bool:
            return bool((by_name is not None and by_name(name))
                        or (by_path is not None and by_path(prefix + name)))

        return excluded

    def walk(self, paths: list[Pending]) -> None:
        """Walk every directory in ``paths`` and everything below it.

        The loop over directories: each is opened relative to its parent's fd
        (see dirfds), checked against its parent's lstat, read by the per-entry
        loop, and keeps its fd only while its subdirectories wait on the stack.
        """
        tally = self.tally
        fds = self.fds
        close = os.close
        monotonic = time.monotonic
        on_tick = self.on_tick
        hungry = self.hungry
        scan = self._scan_compiled if self.compiled else partial(scan_python, self)
        stack = [self._item(*pending) for pending in reversed(paths)]
        next_tick = monotonic() + TICK_SECONDS
        try:
            while stack:
                if hungry is not None and hungry.value and len(stack) > 1 and self._donate(stack):
                    hungry.value = 0
                if on_tick is not None and monotonic() >= next_tick:
                    on_tick(tally)
                    next_tick = monotonic() + TICK_SECONDS
                node = Dir(*stack.pop())
                fd = self._open(node)
                if fd < 0:
                    continue
                tally.directories += 1
                try:
                    waiting = scan(fd, node, stack)
                except BaseException:
                    close(fd)
                    raise
                if waiting:
                    node.waiting = waiting
                    fds.keep(node, fd)
                else:
                    close(fd)
        finally:
            fds.close_all()
        if self.spool is not None and self.spool.fd is None:
            tally.candidates += self.spool.take()
        elif self.spool is not None:
            self.spool.flush()
            tally.spool_error = tally.spool_error or self.spool.error
        if on_tick is not None:
            on_tick(tally)

    def _open(self, node: Dir) -> int:
        """``node``'s fd (checked: see dirfds.open_checked), or -1: left out or an error.

        Either way its parent has one subdirectory less waiting.
        """
        parent = node.parent
        fd = -1
        if self.config.leave_out and (node.dev, node.ino) in self.config.leave_out:
            self.tally.left_out.add((node.dev, node.ino))
        else:
            try:
                fd = self.fds.open(node)
            except OSError as exc:
                self.tally.note_error(error_line(child_path(parent, node.name), exc))
        if parent is not None:
            parent.waiting -= 1
            if not parent.waiting:
                self.fds.release(parent)
        return fd

    def _item(self, path: str, dev: int, ino: int) -> Item:
        """A stack entry for a directory given by path (the root, or work from another worker).

        Its ancestors become :class:`Dir` links without fds, so it is opened
        name by name from the root however deep it is.
        """
        config = self.config
        if path == config.root:
            return (None, config.root, config.root_dev, config.root_ino)
        names = path[len(self._root_dir.prefix()):].split("/")
        parent = self._root_dir
        for name in names[:-1]:
            parent = Dir(parent, name, 0, 0)
        parent.waiting += 1
        return (parent, names[-1], dev, ino)

    def _donate(self, stack: list[Item]) -> bool:
        """Hand up to the bottom half of the stack (the shallowest, hence biggest,
        subtrees) away; only directories at most DONATE_MAX_DEPTH deep (dirfds)."""
        if self.donate is None:
            return False
        half = len(stack) // 2
        count = 0
        limit = dirfds.DONATE_MAX_DEPTH
        while count < half:
            parent = stack[count][0]
            if parent is not None and parent.depth >= limit:
                break
            count += 1
        if not count:
            return False
        given = stack[:count]
        del stack[:count]
        paths: list[Pending] = []
        for parent, name, dev, ino in given:
            paths.append((child_path(parent, name), dev, ino))
            if parent is not None:
                parent.waiting -= 1
                if not parent.waiting:
                    self.fds.release(parent)
        self.donate(paths)
        return True

    def _scan_compiled(self, fd: int, node: Dir, stack: list[Item]) -> int:
        """One directory through the compiled loop; returns how many subdirectories it pushed."""
        assert _dirscan is not None
        tally = self.tally
        config = self.config
        excluded = self._exclusion(node.prefix()) if self.excluding else None
        rule = config.age
        spool = self.spool
        extra = () if spool is None else (
            spool.buffer, spool.directory(node.path(), node.dev, node.ino))
        pushed, failures, read_errno, files, size, old_bytes = _dirscan.scan_dir(
            fd, node, stack, tally.by_uid, tally.linked, tally.hist, node.key,
            config.root_dev, config.one_file_system, rule.code, self.now_ns, rule.now,
            rule.limit_seconds, excluded, *extra)
        if spool is not None:
            spool.maybe_flush()
        tally.add_dir(node.key, files, size, old_bytes)
        if failures:
            prefix = node.prefix()
            for name, number in failures:
                tally.note_error(errno_line(prefix + name, number))
        if read_errno:
            tally.note_error(errno_line(node.path(), read_errno))
        return int(pushed)


def walk_in_process(
    config: WalkConfig,
    progress: Callable[[int, int], None] | None = None,
    scandir: Scandir = os.scandir,
) -> Tally:
    """The single-process scan (``workers = 1``): no pool, no pickling."""
    on_tick = None
    if progress is not None:
        report = progress

        def on_tick(tally: Tally) -> None:
            report(*tally.files_and_bytes())

    walker = Walker(config, on_tick=on_tick, scandir=scandir,
                    spool=config.spools[0] if config.spools else None)
    walker.walk([(config.root, config.root_dev, config.root_ino)])
    return walker.tally
