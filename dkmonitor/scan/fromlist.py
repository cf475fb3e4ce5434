"""A full scan from a site scanner's list instead of a walk (``run full --from-list``).

Sites with 10^8-10^9 files already run a parallel scanner (GNU find on many
nodes, GPFS ``mmapplypolicy``, Lustre ``lfs find``). Their list is read here,
one record at a time, into the same :class:`~dkmonitor.scan.tally.Tally` a
walk fills, so the result is a plain :class:`ScanResult` and storing, mail and
cleaning work unchanged (the cleaner still re-checks each file on disk).

Streamed: memory holds one read buffer, the per-owner counters and the
multiply-linked inodes (as in a walk), never the records. A record that does
not parse, or names a path outside the target, is counted as an error with its
line number; the first few are kept as samples. A list that ends in the middle
of a record (or of its compressed stream) is an error too, never a crash.
Formats: :mod:`dkmonitor.scan.listformats`; the commands: docs/lists.md.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dkmonitor.scan import tally as tally_columns
from dkmonitor.scan.age import AGE_BASES, DAY, is_old
from dkmonitor.scan.listformats import (
    DEV,
    FIELD_LISTS,
    FORMATS,
    KINDS,
    PATH,
    TERMINATORS,
    epoch_ns,
)
from dkmonitor.scan.listio import Records, open_list, zstandard_module
from dkmonitor.scan.stats import ScanOptions, ScanResult
from dkmonitor.scan.tally import Tally

Progress = Callable[[int, int], None]

# Within this many ns of the old/not-old boundary, ask age.is_old itself (as the walker does).
_BOUNDARY_SLACK_NS = 10_000


def printable(path: bytes) -> str:
    """A path safe to log and store as UTF-8 (undecodable bytes as \\xNN), as the walker does."""
    return path.decode("utf-8", "backslashreplace")


class ListError(ValueError):
    """The list cannot be read at all (unknown format, no zstd support): exit 2."""


@dataclass(frozen=True)
class ListSource:
    """A list file and its format, as given by ``--from-list`` and ``--list-format``."""

    path: str
    list_format: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def check_list(source: ListSource) -> None:
    """Refuse up front what cannot work, with one line that says how to fix it."""
    if source.list_format not in FORMATS:
        raise ListError(
            f"unknown list format {source.list_format!r}; use one of {', '.join(FORMATS)}"
        )
    if not os.access(source.path, os.R_OK) or os.path.isdir(source.path):
        raise ListError(f"list {source.path}: not a readable file")
    if source.path.endswith(".zst") and zstandard_module() is None and shutil.which("zstd") is None:
        raise ListError(
            f"list {source.path}: reading .zst needs pip install 'dkmonitor[zstd]' "
            "or the zstd command (Debian: apt-get install zstd)"
        )


def scan_list(
    source: ListSource, root: str, options: ScanOptions, progress: Progress | None = None,
    *, use_zstandard: bool = True,
) -> ScanResult:
    """Aggregate ``source`` exactly as :func:`dkmonitor.scan.scan_tree` would the tree.

    ``root`` is the task's target; records outside it are errors. Raises
    :class:`ListError` for an unusable source or a list with nothing of the
    target in it, and ``OSError`` when the file cannot be opened; everything
    else inside the list is counted, never raised.
    """
    check_list(source)
    root = os.path.abspath(os.fsdecode(root))
    tally = Tally()
    with open_list(source.path, use_zstandard) as stream:
        records = Records(stream, TERMINATORS[source.list_format])
        count = _ingest(records, source, root, options, tally, progress)
    if records.tail:
        tally.note_error(f"{source.name} line {count + 1}: truncated record at the end "
                         "of the list (no terminator); the list is incomplete")
    if records.failure:
        tally.note_error(f"{source.name} after line {count}: the list ends early "
                         f"({records.failure}); the list is incomplete")
    result = tally.to_result(root)
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
    """What the loop checks paths against; the root record sets the device (find -xdev)."""

    root: bytes
    prefix: bytes
    one_fs: bool
    excluded: Callable[[bytes], bool] | None
    dev: bytes | None = None

    @property
    def checked(self) -> bool:
        return self.one_fs or self.excluded is not None

    def admits(self, fields: list[bytes]) -> bool:
        """False for entries the walk would not see (another file system, an exclude glob)."""
        path = fields[PATH]
        if path == self.root:
            self.dev = fields[DEV]
            return True
        if self.one_fs and self.dev is not None and fields[DEV] != self.dev:
            return False
        return self.excluded is None or not self.excluded(path)


@dataclass
class _Loop:
    """The reading loop's state between batches (unpacked into locals for each batch)."""

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


def _ingest(
    records: Records, source: ListSource, root: str, options: ScanOptions, tally: Tally,
    progress: Progress | None,
) -> int:
    """Read every batch into the tally; returns the number of records read.

    Owners are keyed by the uid's bytes while reading (a dict lookup is cheaper
    than ``int()``) and folded into the tally at the end.
    """
    if options.age_basis not in AGE_BASES:
        raise ListError(f"unknown age basis {options.age_basis!r}")
    root_b = os.fsencode(root)
    cut_ns = int((options.now - options.old_days * DAY) * 1e9)
    loop = _Loop(
        name=source.name, root=root,
        target=_Target(root_b, root_b.rstrip(b"/") + b"/",
                       options.one_file_system and source.list_format == "find",
                       _excluder(root, options)),
        field_list=(FIELD_LISTS[source.list_format](options.age_basis)
                    if source.list_format in FIELD_LISTS else None),
        tally=tally,
        now_ns=int(options.now * 1e9), old_below=cut_ns - _BOUNDARY_SLACK_NS,
        young_above=cut_ns + _BOUNDARY_SLACK_NS, boundary=_boundary_test(options),
        basis=options.age_basis, by_uid={},
    )
    for batch in records:
        _read_batch(loop, batch)
        if progress is not None:
            counters = loop.by_uid.values()
            progress(sum(c[0] for c in counters), sum(c[1] for c in counters))
    _fold(loop.by_uid, tally)
    return loop.number


def _read_batch(loop: _Loop, batch: list[bytes]) -> None:
    """The per-record loop: the hot path, so locals only and no call per plain file."""
    target, field_list, tally, linked = loop.target, loop.field_list, loop.tally, loop.tally.linked
    root_b, prefix, checked = target.root, target.prefix, target.checked
    by_uid, now_ns, basis = loop.by_uid, loop.now_ns, loop.basis
    by_used, by_atime, by_mtime = basis == "used", basis == "atime", basis == "mtime"
    old_below, young_above, boundary = loop.old_below, loop.young_above, loop.boundary
    number = loop.number
    for record in batch:
        number += 1
        try:
            fields = record.split(b" ", 10) if field_list is None else field_list(record)
            dev, ino, nlink, uid, size, blocks, atime, mtime, ctime, kind, path = fields
            if not path.startswith(prefix) and path != root_b:
                tally.note_error(f"{loop.name} line {number}: {printable(path)} "
                                 f"is not under the target {loop.root}")
                continue
            if checked and not target.admits(fields):
                continue
            if kind != b"f":
                if kind == b"d":
                    tally.directories += 1
                elif kind not in KINDS:
                    raise ValueError(f"unknown type {kind!r}")
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
            size_n = int(size)
            if nlink != b"1" and int(nlink) > 1:
                key = (int(dev), int(ino))
                if key not in linked:
                    linked[key] = (int(uid), size_n, int(blocks), age, old)
                continue
            counters = by_uid.get(uid)
            if counters is None:
                counters = by_uid[uid] = [0, 0, 0, 0, 0, 0, int(uid)]
            counters[0] += 1
            counters[1] += size_n
            counters[2] += int(blocks)
            counters[3] += age
            if old:
                counters[4] += 1
                counters[5] += size_n
        except (ValueError, IndexError) as exc:
            tally.note_error(f"{loop.name} line {number}: malformed record ({exc})")
    loop.number = number


def _fold(by_uid: dict[bytes, list[int]], tally: Tally) -> None:
    """The loop's per-uid counters into the tally's (whatever columns it has)."""
    for files, size, blocks, age_ns, old_files, old_bytes, uid in by_uid.values():
        counters = tally.by_uid.get(uid)
        if counters is None:
            counters = tally.by_uid[uid] = tally_columns.new_counters()
        counters[tally_columns.FILES] += files
        counters[tally_columns.BYTES] += size
        counters[tally_columns.BLOCKS] += blocks
        counters[tally_columns.AGE_NS] += age_ns
        counters[tally_columns.OLD_FILES] += old_files
        counters[tally_columns.OLD_BYTES] += old_bytes


def _boundary_test(options: ScanOptions) -> Callable[[int], bool]:
    """age.is_old for a last use within microseconds of the threshold (rare).

    It gets the stat fields the walker's ``lstat`` would have given it (float
    seconds built as CPython builds ``st_atime``), so a list and a walk can
    never disagree about a file on the boundary.
    """
    now, old_days, basis = options.now, options.old_days, options.age_basis

    def boundary(last_ns: int) -> bool:
        seconds, nanos = divmod(last_ns, 1_000_000_000)
        as_float = float(seconds) + nanos * 1e-9
        fields = (0, 0, 0, 0, 0, 0, 0, seconds, seconds, seconds, as_float, as_float, as_float)
        return is_old(os.stat_result(fields), now, old_days, basis)

    return boundary
