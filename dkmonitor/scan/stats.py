"""Plain value types a scan produces.

These cross process boundaries (parallel workers) and the scan/db seam, so
they hold only numbers and strings: no paths to re-resolve, no open handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dkmonitor.records import FrozenRecord, Record
from dkmonitor.scan.age import DAY, AgeRule


@dataclass(frozen=True, init=False, repr=False, eq=False)
class ScanOptions(FrozenRecord):
    """What a scan needs to know; built by the runner from a task and settings.

    ``age`` is the task's :class:`~dkmonitor.scan.age.AgeRule`; callers that
    have no rule at hand may give ``old_days``, ``now`` and ``age_basis``
    instead, which make one (the triple is not kept anywhere else).
    """

    age: AgeRule
    exclude: tuple[str, ...] = ()
    one_file_system: bool = True
    workers: int = 1
    threads_per_rank: int = 4  # walker threads of each MPI rank (scan/threaded.py)
    # Absolute paths of directories never to walk (dkmonitor's own state and
    # log directories), matched by st_dev+st_ino so another spelling of the
    # same directory (a symlink, a bind mount) is left out too.
    leave_out: tuple[str, ...] = ()
    # An announcing task's: where to spool the old files the walk meets
    # (announce/spool.py), or None not to.
    candidate_dir: str | None = None

    def __init__(
        self,
        age: AgeRule | None = None,
        *,
        old_days: float | None = None,
        now: float | None = None,
        age_basis: str = "used",
        exclude: tuple[str, ...] = (),
        one_file_system: bool = True,
        workers: int = 1,
        threads_per_rank: int = 4,
        leave_out: tuple[str, ...] = (),
        candidate_dir: str | None = None,
    ) -> None:
        if age is None:
            if old_days is None or now is None:
                raise TypeError("ScanOptions needs age=AgeRule(...) or old_days= and now=")
            age = AgeRule(old_days, now, age_basis)
        object.__setattr__(self, "age", age)
        object.__setattr__(self, "exclude", tuple(exclude))
        object.__setattr__(self, "one_file_system", one_file_system)
        object.__setattr__(self, "workers", workers)
        object.__setattr__(self, "threads_per_rank", threads_per_rank)
        object.__setattr__(self, "leave_out", tuple(leave_out))
        object.__setattr__(self, "candidate_dir", candidate_dir)


@dataclass(repr=False, eq=False)
class Usage(Record):
    """Counters for one owner, or for the whole target."""

    files: int = 0
    bytes: int = 0
    allocated_bytes: int = 0
    old_files: int = 0
    old_bytes: int = 0
    age_seconds: float = 0.0  # sum over files; the mean is derived
    # Every entry below the target owned, counted once per inode: regular
    # files, directories (not mount points of other filesystems), symlinks and
    # special files. Unreadable directories count: they exist. (An owner of no
    # regular file is in ScanResult.fileless_owners, not by_uid.)
    inodes: int = 0
    directories: int = 0

    def add_file(self, size: int, allocated: int, age: float, old: bool) -> None:
        self.files += 1
        self.bytes += size
        self.allocated_bytes += allocated
        self.age_seconds += age
        if old:
            self.old_files += 1
            self.old_bytes += size

    def merge(self, other: Usage) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.allocated_bytes += other.allocated_bytes
        self.old_files += other.old_files
        self.old_bytes += other.old_bytes
        self.age_seconds += other.age_seconds
        self.inodes += other.inodes
        self.directories += other.directories

    @property
    def average_age_days(self) -> float:
        return self.age_seconds / self.files / DAY if self.files else 0.0


# Histogram buckets, fixed so that scans compare over time. A bucket holds the
# values below its upper edge (and at or above the previous one); the last has
# no upper edge. Sizes: st_size in powers of 16 from 4 KiB. Ages: days since
# last use by the task's age basis (the same age as the mean age).
SIZE_EDGES = (4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 4 << 30, 64 << 30)
SIZE_LABELS = ("<4K", "<64K", "<1M", "<16M", "<256M", "<4G", "<64G", ">=64G")
AGE_EDGES_DAYS = (7, 30, 90, 180, 365, 730)
AGE_LABELS = ("<7d", "<30d", "<90d", "<180d", "<365d", "<730d", ">=730d")
AGE_EDGES_NS = tuple(days * 86400 * 10**9 for days in AGE_EDGES_DAYS)

# Top directories: whole-subtree totals of the directories at most
# TOP_DIR_DEPTH levels below the target (files deeper count in their ancestor
# at that depth), the TOP_DIRS largest kept. Memory grows with the number of
# such directories holding files, never with the number of files.
TOP_DIR_DEPTH = 3
TOP_DIRS = 20


@dataclass(frozen=True, repr=False, eq=False)
class HistogramBucket(FrozenRecord):
    """Regular files (each inode once) and their apparent bytes in one bucket."""

    label: str  # e.g. "<64K", ">=730d"
    upper: int | None  # exclusive upper edge (bytes, or days for ages); None: unbounded
    files: int
    bytes: int


@dataclass(frozen=True, repr=False, eq=False)
class DirTotal(FrozenRecord):
    """One directory's whole subtree (bounded: see TOP_DIR_DEPTH)."""

    path: str  # absolute, printable (undecodable bytes as \\xNN)
    depth: int  # 1 = a directory directly in the target
    files: int
    bytes: int
    old_bytes: int


@dataclass(repr=False, eq=False)
class ScanResult(Record):
    """Outcome of walking one target: per-uid usage, per-target shape, error accounting.

    ``directories`` is the number of directories walked (opened and read):
    with ``errors`` it says how much of the tree the figures cover. (The
    per-owner ``Usage.directories`` counts directories owned, read or not.)
    """

    root: str
    by_uid: dict[int, Usage] = field(default_factory=dict)  # owners of regular files
    # Owners of entries below the target but of no regular file (only
    # directories, symlinks, special files): their inodes and directories,
    # kept apart so that "users" (top-percent shares, mails) stays file owners.
    fileless_owners: dict[int, Usage] = field(default_factory=dict)
    directories: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)  # first few, for logs/mail
    size_histogram: tuple[HistogramBucket, ...] = ()
    age_histogram: tuple[HistogramBucket, ...] = ()
    top_dirs_by_bytes: tuple[DirTotal, ...] = ()
    top_dirs_by_old_bytes: tuple[DirTotal, ...] = ()
    left_out: tuple[str, ...] = ()  # ScanOptions.leave_out met in this target (not walked)
    # fds of unnamed files holding the old files met (ScanOptions.candidate_dir),
    # for the announce step, which closes them; empty when the walk did not spool
    candidates: tuple[int, ...] = ()
    candidates_error: str = ""  # why they could not all be spooled; "" when they were

    MAX_ERROR_SAMPLES = 20

    def note_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < self.MAX_ERROR_SAMPLES:
            self.error_samples.append(message)

    @property
    def total(self) -> Usage:
        """The whole target: every owner's files, and every entry's inode (owners of
        no regular file included: their directories and symlinks are the target's too)."""
        whole = Usage()
        for usage in self.by_uid.values():
            whole.merge(usage)
        for usage in self.fileless_owners.values():
            whole.merge(usage)
        return whole
