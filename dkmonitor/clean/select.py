"""Finding the old files of a target and ordering them largest-and-oldest first.

The walk goes through directory fds only (see fsops), never follows a
symlink and never leaves the target's filesystem. Only regular files old by
the task's age basis (the scanner's own ``is_old``) that no exclude glob
matches become candidates.

Memory is bounded whatever the number of files. The best ``chunk`` files
(by size x age) are kept in a min-heap during one walk; when there may be
more, the next walk keeps the best ``chunk`` files strictly below the last
one taken, and so on. Each pass holds at most ``chunk`` candidates, the
order over all passes is exactly the global size x age order, and files
acted on (gone) or skipped (ranked above the cut) are not picked twice. In
practice one pass is enough: a run usually stops at the purge target or a
per-run limit long before ``chunk`` files, and with ``max_files_per_run``
set the chunk is never larger than that limit. The cost of a huge unbounded
clean-up is one extra walk per ``chunk`` files, never unbounded memory.
"""

from __future__ import annotations

import heapq
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dkmonitor.clean.exclude import is_excluded
from dkmonitor.clean.exemptions import ExemptRules
from dkmonitor.clean.fsops import Unsafe, open_dir_at
from dkmonitor.scan.age import is_old, last_use

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 50_000

# (score, inode, parent parts, name): a total order, unique per path.
Key = tuple[float, int, tuple[str, ...], str]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An old regular file as it was when selected; re-checked before any action."""

    parent: tuple[str, ...]  # directory names below the target (shared by siblings)
    name: str  # str with surrogate escapes: os.fsencode gives the exact bytes back
    parent_dev: int
    parent_ino: int
    dev: int
    ino: int
    size: int
    mtime_ns: int
    uid: int
    gid: int
    nlink: int
    score: float
    used: float = 0.0  # epoch seconds of last use by the task's age basis

    @property
    def parts(self) -> tuple[str, ...]:
        """Its path below the target, component by component."""
        return (*self.parent, self.name)

    @property
    def key(self) -> Key:
        return (self.score, self.ino, self.parent, self.name)

    def relative(self) -> str:
        return "/".join((*self.parent, self.name))

    def abs_path(self, target: str) -> str:
        return f"{target.rstrip('/')}/{self.relative()}"


@dataclass(frozen=True)
class SelectOptions:
    target: str  # the task's target path, as configured (used for globs and display)
    old_days: float
    now: float
    age_basis: str = "used"
    exclude: tuple[str, ...] = ()
    exempt: ExemptRules = ExemptRules()  # never candidates, whatever their age


@dataclass
class _Frame:
    fd: int
    parts: tuple[str, ...]
    pending: list[str]


def iter_old_files(root_fd: int, options: SelectOptions) -> Iterator[Candidate]:
    """Every old regular file under root_fd, in walk order, one walk.

    Open fds grow with depth only: a directory's fd stays open while its
    subdirectories (names only) wait on the stack.
    """
    root_st = os.fstat(root_fd)
    root_dev = root_st.st_dev
    target = options.target.rstrip("/")
    first = _Frame(os.dup(root_fd), (), [])
    stack: list[_Frame] = [first]
    try:
        yield from _scan_dir(first, root_st, root_dev, target, options)
        while stack:
            top = stack[-1]
            if not top.pending:
                stack.pop()
                os.close(top.fd)
                continue
            name = top.pending.pop()
            try:
                child_fd = open_dir_at(top.fd, name, root_dev)
            except (Unsafe, OSError) as exc:
                log.debug("not descending into %r: %s", name, exc)
                continue
            frame = _Frame(child_fd, (*top.parts, name), [])
            stack.append(frame)
            yield from _scan_dir(frame, os.fstat(child_fd), root_dev, target, options)
    finally:
        for frame in stack:
            os.close(frame.fd)


def _scan_dir(
    frame: _Frame, dir_st: os.stat_result, root_dev: int, target: str, options: SelectOptions
) -> Iterator[Candidate]:
    prefix = "/".join((target, *frame.parts))
    try:
        entries = os.scandir(frame.fd)
    except OSError as exc:
        log.warning("cannot list %s: %s", prefix, exc.strerror)
        return
    with entries:
        for entry in entries:
            name = entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while listing
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                if st.st_dev != root_dev:
                    log.debug("not crossing mount point %s/%s", prefix, name)
                elif options.exempt.covers_path((*frame.parts, name)):
                    log.debug("not descending into exempt %s/%s", prefix, name)
                elif not is_excluded(options.exclude, f"{prefix}/{name}", name):
                    frame.pending.append(name)
                continue
            if not stat.S_ISREG(mode):
                continue  # symlinks, FIFOs, sockets, devices: never touched
            if not is_old(st, options.now, options.old_days, options.age_basis):
                continue
            if is_excluded(options.exclude, f"{prefix}/{name}", name):
                continue
            if st.st_uid in options.exempt.uids:
                continue
            used = last_use(st, options.age_basis)
            yield Candidate(
                parent=frame.parts,
                name=name,
                parent_dev=dir_st.st_dev,
                parent_ino=dir_st.st_ino,
                dev=st.st_dev,
                ino=st.st_ino,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                uid=st.st_uid,
                gid=st.st_gid,
                nlink=st.st_nlink,
                score=float(st.st_size) * max(0.0, options.now - used),
                used=used,
            )


def best_below(candidates: Iterator[Candidate], limit: int, below: Key | None) -> list[Candidate]:
    """The ``limit`` best candidates with a key strictly below ``below``, best first."""
    heap: list[tuple[Key, Candidate]] = []
    for cand in candidates:
        key = cand.key
        if below is not None and not key < below:
            continue
        if len(heap) < limit:
            heapq.heappush(heap, (key, cand))
        elif key > heap[0][0]:
            heapq.heapreplace(heap, (key, cand))
    heap.sort(reverse=True)
    return [cand for _key, cand in heap]


def candidate_batches(
    walk: Callable[[], Iterator[Candidate]], chunk: int = DEFAULT_CHUNK
) -> Iterator[list[Candidate]]:
    """Batches of candidates in global size x age order, one walk per batch.

    ``walk`` starts a fresh walk each time it is called. The caller may stop
    consuming at any point (limits, purge target reached).
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    below: Key | None = None
    while True:
        batch = best_below(walk(), chunk, below)
        if batch:
            yield batch
        if len(batch) < chunk:
            return
        below = batch[-1].key
