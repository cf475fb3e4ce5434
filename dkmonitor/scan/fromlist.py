"""A full scan from a site scanner's list instead of a walk (``run full --from-list``).

Sites with 10^8-10^9 files already run a parallel scanner (GNU find on many
nodes, GPFS ``mmapplypolicy``, Lustre ``lfs find``). Their list is read here,
one record at a time, into the same :class:`~dkmonitor.scan.tally.Tally` a
walk fills, so the result is a plain :class:`ScanResult` and storing, mail and
cleaning work unchanged (the cleaner still re-checks each file on disk).

Streamed: memory holds one read buffer, the per-owner counters, the
multiply-linked inodes and the top directories' sums (as in a walk), never
the records. Every number of a walk comes out, filled by pyloop.py's rules
(per-owner inodes and directories, histograms, top directories by path). A record that does
not parse, or names a path outside the target, is counted as an error with its
line number; the first few are kept as samples. A list that ends in the middle
of a record (or of its compressed stream) is an error too, never a crash.
Formats: :mod:`dkmonitor.scan.listformats`; the commands: docs/lists.md; plain
files go through a compiled loop when it is built (:mod:`~dkmonitor.scan.listcompiled`).
"""

from __future__ import annotations

import fnmatch
import os
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dkmonitor.scan import listcompiled
from dkmonitor.scan.age import AgeRule
from dkmonitor.scan.listformats import (
    DEV,
    FIELD_LISTS,
    KIND,
    KINDS,
    PATH,
    TERMINATORS,
    UID,
    epoch_ns,
)
from dkmonitor.scan.listio import ListError, ListSource, Records, check_list, open_list
from dkmonitor.scan.stats import AGE_EDGES_NS, SIZE_EDGES, TOP_DIR_DEPTH, ScanOptions, ScanResult
from dkmonitor.scan.tally import AGE_BYTES, AGE_FILES, NCOLUMNS, SIZE_BYTES, SIZE_FILES, Tally

__all__ = ["ListError", "ListSource", "check_list", "scan_list"]

Progress = Callable[[int, int], None]

# The loop indexes its per-owner lists with the tally's column numbers as
# literals (as pyloop.py does: FILES, BYTES, BLOCKS, OLD_FILES, OLD_BYTES,
# AGE_NS, DIRS, OTHERS), then the owner's uid; this pins the layout.
assert NCOLUMNS == 8 and SIZE_FILES == 0
_UID = NCOLUMNS

# Within this many ns of the old/not-old boundary, ask age.is_old itself (as the walker does).
_BOUNDARY_SLACK_NS = 10_000


def printable(path: bytes) -> str:
    """A path safe to log and store as UTF-8 (undecodable bytes as \\xNN), as the walker does."""
    return path.decode("utf-8", "backslashreplace")


def scan_list(
    source: ListSource, root: str, options: ScanOptions, progress: Progress | None = None,
    *, use_zstandard: bool = True, compiled: bool | None = None,
) -> ScanResult:
    """Aggregate ``source`` exactly as :func:`dkmonitor.scan.scan_tree` would the tree.

    ``root`` is the task's target; records outside it are errors. Raises
    :class:`ListError` for an unusable source or a list with nothing of the
    target in it, and ``OSError`` when the file cannot be opened; everything
    else inside the list is counted, never raised. ``compiled`` (default: when
    built and not turned off) reads plain files with ``_listparse.c``.
    """
    check_list(source)
    root = os.path.abspath(os.fsdecode(root))
    tally = Tally()
    with open_list(source.path, use_zstandard) as stream:
        records = Records(stream, TERMINATORS[source.list_format])
        loop = _ingest(records, source, root, options, tally, progress,
                       listcompiled.wanted() if compiled is None else compiled)
    count = loop.number
    if records.tail:
        tally.note_error(f"{source.name} line {count + 1}: truncated record at the end "
                         "of the list (no terminator); the list is incomplete")
    if records.failure:
        tally.note_error(f"{source.name} after line {count}: the list ends early "
                         f"({records.failure}); the list is incomplete")
    result = tally.to_result(root)
    result.left_out = loop.target.left_out()
    if not result.directories and not result.by_uid:
        # A list of another tree, or with relative paths: storing zeros would
        # tell every user they use nothing. Fail the task instead.
        first = f" ({result.error_samples[0]})" if result.error_samples else ""
        raise ListError(f"list {source.path}: none of its {count} record(s) is the target "
                        f"{root} or below it{first}; list the target by its absolute path")
    if progress is not None:
        progress(result.total.files, result.total.bytes)
    return result


def _matcher(patterns: list[str]) -> Callable[[str], Any] | None:
    """One regex for globs, with the walker's semantics (fnmatch, case-sensitive)."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


def _excluder(root: str, options: ScanOptions) -> Callable[[bytes], bool] | None:
    """Whether a path, or any directory above it below the root, matches an exclude glob.

    The walk never enters an excluded directory; a list names what lies below it,
    so every component is tested (only when globs are configured).
    """
    if not options.exclude:
        return None
    by_name = _matcher([p for p in options.exclude if "/" not in p])
    by_path = _matcher([p for p in options.exclude if "/" in p])
    start = len(root.rstrip("/")) + 1

    def excluded(path: bytes) -> bool:
        text = os.fsdecode(path)
        cut = start
        while cut <= len(text):
            end = text.find("/", cut)
            end = len(text) if end < 0 else end
            if (by_name is not None and by_name(text[cut:end])) or (
                    by_path is not None and by_path(text[:end])):
                return True
            cut = end + 1
        return False

    return excluded


@dataclass
class _Target:
    """What the loop checks paths against; the root record sets the device (find -xdev).

    ``left`` maps the list's spelling of each ``ScanOptions.leave_out``
    directory inside the target to the option's own spelling; ``met`` collects
    those the list names (the walk's ``result.left_out``).
    """

    root: bytes
    prefix: bytes
    one_fs: bool
    excluded: Callable[[bytes], bool] | None
    left: dict[bytes, str] = field(default_factory=dict)
    met: set[bytes] = field(default_factory=set)
    dev: bytes | None = None

    @property
    def checked(self) -> bool:
        return self.one_fs or self.excluded is not None or bool(self.left)

    def admits(self, fields: list[bytes]) -> bool:
        """False for entries the walk would not see (another file system, an exclude
        glob, anything below a directory left out)."""
        path = fields[PATH]
        if self.one_fs and self.dev is not None and fields[DEV] != self.dev:
            return False
        for left in self.left:
            if path.startswith(left) and path[len(left):len(left) + 1] == b"/":
                return False
        return self.excluded is None or not self.excluded(path)

    def left_out(self) -> tuple[str, ...]:
        return tuple(path for spelling, path in self.left.items() if spelling in self.met)


def _leave_out(root: str, options: ScanOptions) -> dict[bytes, str]:
    """Each ``leave_out`` directory below the target, spelled as the list spells it.

    The walk matches them by (st_dev, st_ino); a list is matched by path, the
    directory's real path taken below the target's real path.
    """
    real_root = os.path.realpath(root)
    found: dict[bytes, str] = {}
    for path in options.leave_out:
        if not os.path.isdir(path):
            continue
        below = os.path.relpath(os.path.realpath(path), real_root)
        if below == "." or below == ".." or below.startswith("../"):
            continue
        found.setdefault(os.fsencode(os.path.join(root, below)), path)
    return found


@dataclass
class _Loop:
    """The reading loop's state between batches (unpacked into locals for each batch).

    ``parent`` is the directory of the last regular file read, ``key`` its
    top-directory key, ``sums`` its files, bytes and old bytes not yet handed
    to ``Tally.add_dir`` (as pyloop.py does once per directory).
    """

    name: str
    root: str
    target: _Target
    field_list: Callable[[bytes], list[bytes]] | None
    tally: Tally
    now_ns: int
    old_below: int
    young_above: int
    boundary: Callable[[int], bool]
    basis: str
    by_uid: dict[bytes, list[int]]
    number: int = 0
    parent: bytes = b"\0"  # no path's directory: the first file sets it
    key: str = ""
    sums: tuple[int, int, int] = (0, 0, 0)

    def enter(self, parent: bytes) -> str:
        """Files from now on are in ``parent``: hand the last directory's sums over."""
        self.flush()
        self.parent = parent
        # Dir.key: the path below the target, cut to its first TOP_DIR_DEPTH names.
        below = parent[len(self.target.prefix):]
        self.key = os.fsdecode(b"/".join(below.split(b"/", TOP_DIR_DEPTH)[:TOP_DIR_DEPTH]))
        return self.key

    def flush(self) -> None:
        self.tally.add_dir(self.key, *self.sums)
        self.sums = (0, 0, 0)


def _ingest(
    records: Records, source: ListSource, root: str, options: ScanOptions, tally: Tally,
    progress: Progress | None, compiled: bool,
) -> _Loop:
    """Read every batch into the tally; returns the loop (records read, directories met).

    Owners are keyed by the uid's bytes while reading (a dict lookup is cheaper
    than ``int()``) and folded into the tally at the end.
    """
    rule = options.age
    root_b = os.fsencode(root)
    cut_ns = int((rule.now - rule.limit_seconds) * 1e9)
    loop = _Loop(
        name=source.name, root=root,
        target=_Target(root_b, root_b.rstrip(b"/") + b"/",
                       options.one_file_system and source.list_format == "find",
                       _excluder(root, options), _leave_out(root, options)),
        field_list=(FIELD_LISTS[source.list_format](rule.basis)
                    if source.list_format in FIELD_LISTS else None),
        tally=tally,
        now_ns=int(rule.now * 1e9), old_below=cut_ns - _BOUNDARY_SLACK_NS,
        young_above=cut_ns + _BOUNDARY_SLACK_NS, boundary=_boundary_test(rule),
        basis=rule.basis, by_uid={},
    )
    fast = (listcompiled.FastFiles(loop, source.list_format)
            if compiled and listcompiled.FastFiles.usable(loop, source.list_format) else None)
    for batch in records:
        if fast is None:
            _read_batch(loop, batch)
        else:
            fast.read_batch(loop, batch, _read_batch)
        if progress is not None:
            counters = loop.by_uid.values()
            progress(sum(c[0] for c in counters), sum(c[1] for c in counters))
    loop.flush()
    _fold(loop.by_uid, tally)
    return loop


def _read_batch(loop: _Loop, batch: list[bytes]) -> None:
    """The per-record loop: the hot path, so locals only and no call per plain file.

    Every step is pyloop.py's for the same entry: the owner's directories and
    other inodes, then per regular file with one link the owner's totals, the
    histograms and the directory's sums; files with several links wait in
    ``linked`` with the smallest directory key they were seen under.
    """
    target, field_list, tally, linked = loop.target, loop.field_list, loop.tally, loop.tally.linked
    root_b, prefix, checked, hist = target.root, target.prefix, target.checked, tally.hist
    by_uid, now_ns, basis, bisect = loop.by_uid, loop.now_ns, loop.basis, bisect_right
    by_used, by_atime, by_mtime = basis == "used", basis == "atime", basis == "mtime"
    old_below, young_above, boundary = loop.old_below, loop.young_above, loop.boundary
    number, parent, dir_key = loop.number, loop.parent, loop.key
    files, total, old_total = loop.sums
    size_edges, age_edges = SIZE_EDGES, AGE_EDGES_NS
    size_bytes_at, age_files_at, age_bytes_at = SIZE_BYTES, AGE_FILES, AGE_BYTES
    for record in batch:
        number += 1
        try:
            fields = record.split(b" ", 10) if field_list is None else field_list(record)
            dev, ino, nlink, uid, size, blocks, atime, mtime, ctime, kind, path = fields
            if kind != b"f" or not path.startswith(prefix) or path == root_b:
                _not_a_file(loop, fields, number)
                continue
            if checked and not target.admits(fields):
                continue
            if by_used:
                stamp = atime
                if len(atime) != 21 or len(mtime) != 21:
                    stamp = max(atime, mtime, key=epoch_ns)
                elif mtime > atime:  # both as find prints them: byte order is time order
                    stamp = mtime
            else:
                stamp = atime if by_atime else mtime if by_mtime else ctime
            last = int(stamp.replace(b".", b"")) // 10 if len(stamp) == 21 else epoch_ns(stamp)
            age = now_ns - last if last < now_ns else 0
            old = last < old_below or (last <= young_above and boundary(last))
            size_n, blocks_n = int(size), int(blocks)
            directory = path[:path.rindex(b"/")]
            if directory != parent:
                loop.sums = (files, total, old_total)
                dir_key = loop.enter(directory)
                parent, files, total, old_total = directory, 0, 0, 0
            if nlink != b"1" and int(nlink) > 1:  # counted once, at the end (Tally.linked)
                key = (int(dev), int(ino))
                known = linked.get(key)
                if known is None:
                    linked[key] = (int(uid), size_n, blocks_n, age, old, dir_key)
                elif dir_key < known[5]:
                    linked[key] = (*known[:5], dir_key)
                continue
            counters = by_uid.get(uid)
            if counters is None:
                counters = by_uid[uid] = [0, 0, 0, 0, 0, 0, 0, 0, int(uid)]
            counters[0] += 1
            counters[1] += size_n
            counters[2] += blocks_n
            counters[5] += age
            if old:
                counters[3] += 1
                counters[4] += size_n
                old_total += size_n
            files += 1
            total += size_n
            bucket = bisect(size_edges, size_n)
            hist[bucket] += 1
            hist[size_bytes_at + bucket] += size_n
            bucket = bisect(age_edges, age)
            hist[age_files_at + bucket] += 1
            hist[age_bytes_at + bucket] += size_n
        except (ValueError, IndexError) as exc:
            tally.note_error(f"{loop.name} line {number}: malformed record ({exc})")
    loop.number, loop.sums = number, (files, total, old_total)


def _not_a_file(loop: _Loop, fields: list[bytes], number: int) -> None:
    """Any record but a regular file below the target: the target itself, a record
    outside it, a directory, another inode (symlink, device, fifo, socket)."""
    target, tally = loop.target, loop.tally
    path, kind, uid = fields[PATH], fields[KIND], fields[UID]
    if path == target.root:
        if kind != b"d":
            raise ValueError(f"the target {loop.root} is listed as type {kind!r}")
        target.dev = fields[DEV]  # find -xdev: the device of everything admitted
        tally.directories += 1  # walked; its own inode is nobody's, as in a walk
        return
    if not path.startswith(target.prefix):
        tally.note_error(f"{loop.name} line {number}: {printable(path)} "
                         f"is not under the target {loop.root}")
        return
    if target.checked and not target.admits(fields):
        return
    if kind not in KINDS:
        raise ValueError(f"unknown type {kind!r}")
    counters = loop.by_uid.get(uid)
    if counters is None:
        counters = loop.by_uid[uid] = [0, 0, 0, 0, 0, 0, 0, 0, int(uid)]
    if kind != b"d":
        counters[7] += 1  # symlink, device, fifo, socket
    else:
        counters[6] += 1
        if path in target.left:
            target.met.add(path)  # the walk does not enter it
        else:
            tally.directories += 1


def _fold(by_uid: dict[bytes, list[int]], tally: Tally) -> None:
    """The loop's per-uid counters (the tally's columns, then the uid) into the tally's."""
    for counters in by_uid.values():
        mine = tally.owner(counters[_UID])
        for column in range(NCOLUMNS):
            mine[column] += counters[column]


def _boundary_test(rule: AgeRule) -> Callable[[int], bool]:
    """AgeRule.is_old for a last use within microseconds of the threshold (rare).

    It gets the stat fields the walker's ``lstat`` would have given it (float
    seconds built as CPython builds ``st_atime``), so a list and a walk can
    never disagree about a file on the boundary.
    """

    def boundary(last_ns: int) -> bool:
        seconds, nanos = divmod(last_ns, 1_000_000_000)
        as_float = float(seconds) + nanos * 1e-9
        fields = (0, 0, 0, 0, 0, 0, 0, seconds, seconds, seconds, as_float, as_float, as_float)
        return rule.is_old(os.stat_result(fields))

    return boundary
