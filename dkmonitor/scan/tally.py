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
different workers is still counted once. Memory therefore grows with the number
of owners and of multiply-linked inodes, never with the number of files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dkmonitor.scan.stats import ScanResult, Usage

# Column positions in a per-uid counter list (lists are the cheapest mutable
# record in CPython's inner loop; a dataclass attribute update costs more).
FILES, BYTES, BLOCKS, OLD_FILES, OLD_BYTES, AGE_NS = range(6)

# A multiply-linked file as first seen: (uid, size, blocks, age_ns, old).
LinkedFile = tuple[int, int, int, int, bool]


def new_counters() -> list[int]:
    return [0, 0, 0, 0, 0, 0]


@dataclass
class Tally:
    """What one walker has counted so far. Picklable: crosses process boundaries."""

    by_uid: dict[int, list[int]] = field(default_factory=dict)
    linked: dict[tuple[int, int], LinkedFile] = field(default_factory=dict)
    directories: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def note_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ScanResult.MAX_ERROR_SAMPLES:
            self.error_samples.append(message)

    def files_and_bytes(self) -> tuple[int, int]:
        """Progress figures (multiply-linked files are left out until the end)."""
        files = sum(counters[FILES] for counters in self.by_uid.values())
        size = sum(counters[BYTES] for counters in self.by_uid.values())
        return files, size

    def merge(self, other: Tally) -> None:
        for uid, theirs in other.by_uid.items():
            mine = self.by_uid.get(uid)
            if mine is None:
                self.by_uid[uid] = list(theirs)
            else:
                for column, value in enumerate(theirs):
                    mine[column] += value
        for key, linked in other.linked.items():
            self.linked.setdefault(key, linked)
        self.directories += other.directories
        self.errors += other.errors
        room = ScanResult.MAX_ERROR_SAMPLES - len(self.error_samples)
        if room > 0:
            self.error_samples.extend(other.error_samples[:room])

    def to_result(self, root: str) -> ScanResult:
        """Fold the hard-linked files in once each and build the public result.

        Owners are inserted in uid order so that ``ScanResult.total`` (a float
        sum over owners) comes out identical however the work was split.
        """
        by_uid = {uid: list(counters) for uid, counters in self.by_uid.items()}
        for uid, size, blocks, age_ns, old in self.linked.values():
            counters = by_uid.get(uid)
            if counters is None:
                counters = by_uid[uid] = new_counters()
            counters[FILES] += 1
            counters[BYTES] += size
            counters[BLOCKS] += blocks
            counters[AGE_NS] += age_ns
            if old:
                counters[OLD_FILES] += 1
                counters[OLD_BYTES] += size
        result = ScanResult(root=root, directories=self.directories, errors=self.errors)
        result.error_samples = list(self.error_samples)
        for uid in sorted(by_uid):
            counters = by_uid[uid]
            result.by_uid[uid] = Usage(
                files=counters[FILES],
                bytes=counters[BYTES],
                allocated_bytes=counters[BLOCKS] * 512,
                old_files=counters[OLD_FILES],
                old_bytes=counters[OLD_BYTES],
                age_seconds=counters[AGE_NS] / 1e9,
            )
        return result
