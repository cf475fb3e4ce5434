"""Per-owner running totals of one walker, and how partial totals combine.

A walker (in-process or one parallel worker) fills a :class:`Tally`; the
parallel scanner merges the workers' tallies; the result is turned into the
public :class:`~dkmonitor.scan.stats.ScanResult` once, at the end.

Everything here is an integer so that merging is exact and order-free: the
parallel scan must give *exactly* the numbers of the single-process scan, and
summing float ages in a different order would not. Ages are summed in
nanoseconds and converted to seconds only in :meth:`Tally.to_result`.

Files with several hard links are kept apart (keyed by ``(st_dev, st_ino)``)
until the very end, so that a file linked from two subtrees walked by two
different workers is still counted once; for the top directories it counts
in the smallest of the directory keys it was seen under, whatever the order.
Memory therefore grows with the number of owners, of multiply-linked inodes
and of directories at most TOP_DIR_DEPTH deep, never with the number of files.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from dkmonitor.scan.dirfds import printable
from dkmonitor.scan.stats import (
    AGE_EDGES_DAYS,
    AGE_EDGES_NS,
    AGE_LABELS,
    SIZE_EDGES,
    SIZE_LABELS,
    TOP_DIRS,
    DirTotal,
    HistogramBucket,
    ScanResult,
    Usage,
)

# Column positions in a per-uid counter list (lists are the cheapest mutable
# record in CPython's inner loop; a dataclass attribute update costs more).
# DIRS: directories owned; OTHERS: symlinks and special files.
FILES, BYTES, BLOCKS, OLD_FILES, OLD_BYTES, AGE_NS, DIRS, OTHERS = range(8)
NCOLUMNS = 8

# The per-target histograms, one flat list: files then bytes per size bucket,
# then files then bytes per age bucket (the compiled loop uses the same layout).
NSIZE = len(SIZE_LABELS)
NAGE = len(AGE_LABELS)
SIZE_FILES, SIZE_BYTES = 0, NSIZE
AGE_FILES, AGE_BYTES = 2 * NSIZE, 2 * NSIZE + NAGE
NHIST = 2 * NSIZE + 2 * NAGE

# A multiply-linked file as first seen: (uid, size, blocks, age_ns, old, dir_key).
LinkedFile = tuple[int, int, int, int, bool, str]


def new_counters() -> list[int]:
    return [0] * NCOLUMNS


@dataclass
class Tally:
    """What one walker has counted so far. Picklable: crosses process boundaries."""

    by_uid: dict[int, list[int]] = field(default_factory=dict)
    linked: dict[tuple[int, int], LinkedFile] = field(default_factory=dict)
    hist: list[int] = field(default_factory=lambda: [0] * NHIST)
    # Directory key (relative path of the directory, or of its ancestor
    # TOP_DIR_DEPTH deep; "" for the target itself) -> [files, bytes, old_bytes]
    # of the regular files directly under it.
    dirs: dict[str, list[int]] = field(default_factory=dict)
    directories: int = 0
    left_out: set[tuple[int, int]] = field(default_factory=set)  # (dev, ino) met, not walked
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    spool_error: str = ""  # why the old files could not be spooled (announce/spool.py)
    # an MPI task's old files, spooled in memory for rank 0 (WalkConfig.spool_in_memory)
    candidates: bytes = b""

    def note_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ScanResult.MAX_ERROR_SAMPLES:
            self.error_samples.append(message)

    def owner(self, uid: int) -> list[int]:
        counters = self.by_uid.get(uid)
        if counters is None:
            counters = self.by_uid[uid] = new_counters()
        return counters

    def files_and_bytes(self) -> tuple[int, int]:
        """Progress figures (multiply-linked files are left out until the end)."""
        files = sum(counters[FILES] for counters in self.by_uid.values())
        size = sum(counters[BYTES] for counters in self.by_uid.values())
        return files, size

    def add_dir(self, key: str, files: int, size: int, old_bytes: int) -> None:
        if files:
            sums = self.dirs.get(key)
            if sums is None:
                self.dirs[key] = [files, size, old_bytes]
            else:
                sums[0] += files
                sums[1] += size
                sums[2] += old_bytes

    def merge(self, other: Tally) -> None:
        for uid, theirs in other.by_uid.items():
            mine = self.owner(uid)
            for column, value in enumerate(theirs):
                mine[column] += value
        for key, linked in other.linked.items():
            known = self.linked.get(key)
            if known is None:
                self.linked[key] = linked
            elif linked[5] < known[5]:
                self.linked[key] = (*known[:5], linked[5])
        for index, value in enumerate(other.hist):
            self.hist[index] += value
        for dir_key, (files, size, old_bytes) in other.dirs.items():
            self.add_dir(dir_key, files, size, old_bytes)
        self.directories += other.directories
        self.left_out |= other.left_out
        self.errors += other.errors
        self.spool_error = self.spool_error or other.spool_error
        self.candidates += other.candidates
        room = ScanResult.MAX_ERROR_SAMPLES - len(self.error_samples)
        if room > 0:
            self.error_samples.extend(other.error_samples[:room])

    def _fold_linked(self) -> None:
        """Count each multiply-linked file once, as the loops count the others."""
        hist = self.hist
        for uid, size, blocks, age_ns, old, dir_key in self.linked.values():
            counters = self.owner(uid)
            counters[FILES] += 1
            counters[BYTES] += size
            counters[BLOCKS] += blocks
            counters[AGE_NS] += age_ns
            if old:
                counters[OLD_FILES] += 1
                counters[OLD_BYTES] += size
            bucket = bisect_right(SIZE_EDGES, size)
            hist[SIZE_FILES + bucket] += 1
            hist[SIZE_BYTES + bucket] += size
            bucket = bisect_right(AGE_EDGES_NS, age_ns)
            hist[AGE_FILES + bucket] += 1
            hist[AGE_BYTES + bucket] += size
            self.add_dir(dir_key, 1, size, size if old else 0)
        self.linked = {}

    def to_result(self, root: str) -> ScanResult:
        """Fold the hard-linked files in once each and build the public result.

        Owners are inserted in uid order so that ``ScanResult.total`` (a float
        sum over owners) comes out identical however the work was split.
        Consumes the tally (call once).
        """
        self._fold_linked()
        result = ScanResult(root=root, directories=self.directories, errors=self.errors)
        result.error_samples = list(self.error_samples)
        result.candidates_error = self.spool_error
        for uid in sorted(self.by_uid):
            counters = self.by_uid[uid]
            owners = result.by_uid if counters[FILES] else result.fileless_owners
            owners[uid] = Usage(
                files=counters[FILES],
                bytes=counters[BYTES],
                allocated_bytes=counters[BLOCKS] * 512,
                old_files=counters[OLD_FILES],
                old_bytes=counters[OLD_BYTES],
                age_seconds=counters[AGE_NS] / 1e9,
                inodes=counters[FILES] + counters[DIRS] + counters[OTHERS],
                directories=counters[DIRS],
            )
        result.size_histogram = _buckets(SIZE_LABELS, SIZE_EDGES, self.hist, SIZE_FILES,
                                         SIZE_BYTES)
        result.age_histogram = _buckets(AGE_LABELS, AGE_EDGES_DAYS, self.hist, AGE_FILES,
                                        AGE_BYTES)
        subtrees = _subtrees(root, self.dirs)
        result.top_dirs_by_bytes = _top(subtrees, lambda d: d.bytes)
        result.top_dirs_by_old_bytes = _top(subtrees, lambda d: d.old_bytes)
        return result


def _buckets(
    labels: tuple[str, ...], edges: tuple[int, ...], hist: list[int], files: int, size: int
) -> tuple[HistogramBucket, ...]:
    return tuple(
        HistogramBucket(label, edges[index] if index < len(edges) else None,
                        hist[files + index], hist[size + index])
        for index, label in enumerate(labels)
    )


def _subtrees(root: str, dirs: dict[str, list[int]]) -> list[DirTotal]:
    """Whole-subtree totals: each key's own files added to it and to every ancestor key."""
    totals: dict[str, list[int]] = {}
    for key, (files, size, old_bytes) in dirs.items():
        parts = key.split("/") if key else []
        for depth in range(1, len(parts) + 1):
            sums = totals.setdefault("/".join(parts[:depth]), [0, 0, 0])
            sums[0] += files
            sums[1] += size
            sums[2] += old_bytes
    prefix = root if root.endswith("/") else root + "/"
    return [
        DirTotal(printable(prefix + key), key.count("/") + 1, files, size, old_bytes)
        for key, (files, size, old_bytes) in totals.items()
    ]


def _top(subtrees: list[DirTotal], measure: Callable[[DirTotal], int]) -> tuple[DirTotal, ...]:
    """The TOP_DIRS largest by ``measure`` (ties by path), zeros left out."""
    ranked = sorted((d for d in subtrees if measure(d) > 0), key=lambda d: (-measure(d), d.path))
    return tuple(ranked[:TOP_DIRS])
