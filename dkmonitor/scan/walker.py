"""The directory walk: one ``lstat`` per entry, totals per owner, nothing kept per file.

The per-entry loop is where a full scan spends its time (millions of
iterations). It exists twice, with identical results (tests/test_scan_compiled.py):

* ``dkmonitor.scan._dirscan`` (C, built at install time when a compiler is
  there): used by default. It leaves the walk to the kernel's own cost
  (getdents, one fstatat per entry): at 1M files a 2-worker scan takes
  ~0.5x find's time, against ~0.7x with the Python loop;
* the Python loop below: the reference and the fallback, written for
  CPython's sake (locals instead of attribute lookups, no function call per
  file, counters in lists, ``DirEntry.stat(follow_symlinks=False)`` as the
  single ``lstat``, made with ``fstatat`` relative to the open directory fd).

Either way the kernel never re-resolves long paths per file, and pending
directories are a plain stack of (path, st_dev, st_ino), so memory is bounded
by the tree's breadth, not its size.

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
from typing import Any, Protocol

from dkmonitor.scan.age import AGE_BASES, DAY, is_old
from dkmonitor.scan.stats import ScanOptions
from dkmonitor.scan.tally import Tally

try:  # the compiled per-directory loop (setup.py builds it when it can)
    from dkmonitor.scan import _dirscan
except ImportError:  # no compiler at install time: the Python loop below does the same
    _dirscan = None  # type: ignore[assignment]

COMPILED = _dirscan is not None

_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000
_OPEN_ROOT = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_OPEN_SUBDIR = _OPEN_ROOT | os.O_NOFOLLOW
# Within this many nanoseconds of the old/not-old boundary, ask age.is_old
# itself, so the scanner and the cleaner can never disagree about a file.
_BOUNDARY_SLACK_NS = 10_000
TICK_SECONDS = 0.2

# The seam os.scandir fills; tests substitute a wrapper to reproduce races
# (a file deleted between readdir and lstat) deterministically.
Scandir = Callable[[int], Any]

# A directory waiting to be walked: its path and the (st_dev, st_ino) its
# parent's lstat saw ((0, 0) for the root). Opening by path re-resolves every
# ancestor; checking the identity after opening means an ancestor swapped for
# a symlink mid-scan cannot lead the walk outside the target.
Pending = tuple[str, int, int]


class Flag(Protocol):
    """A shared integer (multiprocessing RawValue) a worker polls once per directory."""

    value: int


@dataclass(frozen=True)
class WalkConfig:
    """Everything a walker needs; picklable so parallel workers get a copy."""

    root: str
    root_dev: int
    one_file_system: bool
    now: float
    old_days: float
    age_basis: str
    exclude: tuple[str, ...]

    @classmethod
    def build(cls, root: str, root_dev: int, options: ScanOptions) -> WalkConfig:
        if options.age_basis not in AGE_BASES:
            raise ValueError(f"unknown age basis {options.age_basis!r}")
        return cls(
            root=root,
            root_dev=root_dev,
            one_file_system=options.one_file_system,
            now=options.now,
            old_days=options.old_days,
            age_basis=options.age_basis,
            exclude=tuple(options.exclude),
        )


def _matcher(patterns: Iterable[str]) -> Callable[[str], Any] | None:
    """One compiled regex for a list of globs (fnmatch semantics, case-sensitive)."""
    patterns = list(patterns)
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


def printable(path: str) -> str:
    """A path safe to log, mail and store as UTF-8 (undecodable bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _error(path: str, exc: OSError) -> str:
    return f"{printable(path)}: {exc.strerror or exc}"


def _errno_error(path: str, number: int) -> str:
    """The same line as :func:`_error`, from the bare errno the compiled loop reports."""
    return f"{printable(path)}: {os.strerror(number)}"


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
    ) -> None:
        self.config = config
        self.tally = tally if tally is not None else Tally()
        self.on_tick = on_tick
        self.hungry = hungry
        self.donate = donate
        self._scandir = scandir
        # A substituted scandir (the tests' race seam) needs the Python loop.
        self.compiled = COMPILED and scandir is os.scandir
        self._exclude_name = _matcher(p for p in config.exclude if "/" not in p)
        self._exclude_path = _matcher(p for p in config.exclude if "/" in p)

    def _exclusion(self, prefix: str) -> Callable[[str], bool]:
        """The compiled loop's test for an entry name in the directory ``prefix``."""
        by_name, by_path = self._exclude_name, self._exclude_path

        def excluded(name: str) -> bool:
            return bool((by_name is not None and by_name(name))
                        or (by_path is not None and by_path(prefix + name)))

        return excluded

    def walk(self, paths: list[Pending]) -> None:
        """Walk every directory in ``paths`` and everything below it."""
        config = self.config
        tally = self.tally
        by_uid = tally.by_uid
        by_uid_get = by_uid.get
        linked = tally.linked
        scandir = self._scandir
        open_dir = os.open
        fstat = os.fstat
        close = os.close
        monotonic = time.monotonic
        root = config.root
        root_dev = config.root_dev
        one_fs = config.one_file_system
        exclude_name = self._exclude_name
        exclude_path = self._exclude_path
        excluding = exclude_name is not None or exclude_path is not None
        on_tick = self.on_tick
        hungry = self.hungry
        donate = self.donate

        basis = config.age_basis
        by_used = basis == "used"
        by_atime = basis == "atime"
        by_mtime = basis == "mtime"
        now = config.now
        old_days = config.old_days
        now_ns = int(now * 1e9)
        cut_ns = int((now - old_days * DAY) * 1e9)
        old_below = cut_ns - _BOUNDARY_SLACK_NS  # last use before this: surely old
        young_above = cut_ns + _BOUNDARY_SLACK_NS  # after this: surely not old
        scan_dir = _dirscan.scan_dir if self.compiled and _dirscan is not None else None
        basis_index = AGE_BASES.index(basis)
        old_limit = old_days * DAY  # exactly is_old's threshold

        stack = list(reversed(paths))
        next_tick = monotonic() + TICK_SECONDS
        while stack:
            if hungry is not None and hungry.value and len(stack) > 1 and donate is not None:
                hungry.value = 0
                half = len(stack) // 2
                given = stack[:half]  # the bottom: shallowest, hence biggest, subtrees
                del stack[:half]
                donate(given)
            if on_tick is not None and monotonic() >= next_tick:
                on_tick(tally)
                next_tick = monotonic() + TICK_SECONDS

            path, seen_dev, seen_ino = stack.pop()
            try:
                fd = open_dir(path, _OPEN_ROOT if path == root else _OPEN_SUBDIR)
            except OSError as exc:
                tally.note_error(_error(path, exc))
                continue
            prefix = path + "/" if path != "/" else "/"
            try:
                if seen_ino:
                    opened = fstat(fd)
                    if opened.st_ino != seen_ino or opened.st_dev != seen_dev:
                        tally.note_error(f"{printable(path)}: replaced during the scan; skipped")
                        continue
                tally.directories += 1
                if scan_dir is not None:
                    subdirs, failures, read_errno = scan_dir(
                        fd, by_uid, linked, root_dev, one_fs, basis_index, now_ns, now,
                        old_limit, self._exclusion(prefix) if excluding else None)
                    stack.extend([(prefix + name, dev, ino) for name, dev, ino in subdirs])
                    for name, number in failures:
                        tally.note_error(_errno_error(prefix + name, number))
                    if read_errno:
                        tally.note_error(_errno_error(path, read_errno))
                    continue
                with scandir(fd) as entries:
                    for entry in entries:
                        try:
                            if excluding:
                                name = entry.name
                                if exclude_name is not None and exclude_name(name):
                                    continue
                                if exclude_path is not None and exclude_path(prefix + name):
                                    continue
                            st = entry.stat(follow_symlinks=False)
                        except OSError as exc:  # vanished since readdir, or unreadable
                            tally.note_error(_error(prefix + entry.name, exc))
                            continue
                        kind = st.st_mode & _S_IFMT
                        if kind != _S_IFREG:
                            if kind == _S_IFDIR and (not one_fs or st.st_dev == root_dev):
                                stack.append((prefix + entry.name, st.st_dev, st.st_ino))
                            continue  # symlink, device, fifo, socket; or another filesystem

                        if by_used:
                            last = st.st_atime_ns
                            mtime = st.st_mtime_ns
                            if mtime > last:
                                last = mtime
                        elif by_atime:
                            last = st.st_atime_ns
                        elif by_mtime:
                            last = st.st_mtime_ns
                        else:
                            last = st.st_ctime_ns
                        age = now_ns - last
                        if age < 0:
                            age = 0
                        uid = st.st_uid
                        size = st.st_size

                        if st.st_nlink > 1:  # counted once, at the end (see Tally.linked)
                            key = (st.st_dev, st.st_ino)
                            if key not in linked:
                                old = last < old_below or (
                                    last <= young_above and is_old(st, now, old_days, basis))
                                linked[key] = (uid, size, st.st_blocks, age, old)
                            continue

                        counters = by_uid_get(uid)
                        if counters is None:
                            counters = by_uid[uid] = [0, 0, 0, 0, 0, 0]
                        counters[0] += 1
                        counters[1] += size
                        counters[2] += st.st_blocks
                        counters[5] += age
                        if last <= young_above and (
                            last < old_below or is_old(st, now, old_days, basis)
                        ):
                            counters[3] += 1
                            counters[4] += size
            except OSError as exc:  # the directory went away while being read
                tally.note_error(_error(path, exc))
            finally:
                close(fd)
        if on_tick is not None:
            on_tick(tally)


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

    walker = Walker(config, on_tick=on_tick, scandir=scandir)
    walker.walk([(config.root, 0, 0)])
    return walker.tally
