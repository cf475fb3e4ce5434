"""What the runner knows about one task's run, handed to the notify and clean steps.

A plain value: no session, no open files. Lives apart from runner.py so that
notify/ and clean/ can use it without importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dkmonitor.metrics import share_percent, values_of
from dkmonitor.records import FrozenRecord, Record
from dkmonitor.scan.disk import DiskUsage
from dkmonitor.scan.stats import ScanResult, Usage
from dkmonitor.taskspec import TaskSpec


@dataclass(frozen=True, repr=False, eq=False)
class UserUsageRow(FrozenRecord):
    """One owner's numbers in a finished full scan, as stored.

    One field per metric of ``dkmonitor.metrics.Totals`` (same names, same
    order; ``tests/test_metrics.py`` checks it), but never None, and
    positional after ``uid`` and ``username``.
    """

    uid: int
    username: str
    files: int
    bytes: int
    allocated_bytes: int
    old_files: int
    old_bytes: int
    average_age_days: float
    inodes: int = 0
    directories: int = 0

    @classmethod
    def from_usage(cls, uid: int, username: str, usage: Usage) -> UserUsageRow:
        """The row of one owner's scan counters (every metric, copied by name)."""
        return cls(uid=uid, username=username, **values_of(usage, 0))

    def share_percent(self, filesystem_bytes: int | None) -> float | None:
        """This owner's share of the file system (allocated bytes, see metrics.share_percent)."""
        return share_percent(self.allocated_bytes, filesystem_bytes)


@dataclass(frozen=True, repr=False, eq=False)
class HistogramBucket(FrozenRecord):
    """One bucket of a scan's size or age histogram (the whole target)."""

    kind: str  # size | age
    lower_bound: int  # bytes (size) or days (age)
    files: int
    bytes: int


@dataclass(frozen=True, repr=False, eq=False)
class TopDirectory(FrozenRecord):
    """One of a scan's top directories, whole-subtree totals."""

    ranking: str  # bytes | old_bytes
    rank: int  # 1 = largest
    path: str
    files: int
    bytes: int
    old_bytes: int


@dataclass(frozen=True, repr=False, eq=False)
class TaskRun(FrozenRecord):
    task: TaskSpec
    hostname: str
    run_id: str
    kind: str  # quick | full
    started_at: datetime
    now: float  # epoch seconds the scan measured ages against
    disk: DiskUsage
    result: ScanResult | None  # None for a quick run
    users: tuple[UserUsageRow, ...]  # sorted by bytes, largest first
    scan_id: int | None  # None when not stored (dry run, spooled)
    dry_run: bool

    @property
    def over_warning(self) -> bool:
        return self.disk.percent > self.task.usage_warning_threshold

    @property
    def over_critical(self) -> bool:
        return self.disk.percent > self.task.usage_critical_threshold


@dataclass(repr=False, eq=False)
class AlteredFiles(Record):
    files: int = 0
    bytes: int = 0


@dataclass(repr=False, eq=False)
class CleanSummary(Record):
    """What the clean step did (or, on a dry run, would do), per owner uid.

    The notify step reads the per-user counts for the move/deletion notices;
    the runner reads ``error`` to decide the exit status.
    """

    dry_run: bool = False
    moved: dict[int, AlteredFiles] = field(default_factory=dict)
    deleted: dict[int, AlteredFiles] = field(default_factory=dict)
    skipped: int = 0
    failed: int = 0
    stopped: str | None = None  # why cleaning stopped early: limit, breaker, destination full
    error: str | None = None  # set when the run must exit 1
    # announced purge (--notice-days): files acted on that had not been announced,
    # per owner, and why that was allowed (over --emergency); both empty otherwise
    unannounced: dict[int, AlteredFiles] = field(default_factory=dict)
    emergency: str | None = None


@dataclass(frozen=True, repr=False, eq=False)
class UserNotice(FrozenRecord):
    """What one user has been told is going to be moved or deleted (--notice-days)."""

    uid: int
    username: str
    files: int
    bytes: int
    new_files: int  # first listed by this run
    first_at: float  # epoch seconds of their earliest announced file
    purge_at: float  # the earliest date any of them can go: first_at + notice_days
    list_path: str | None  # their list file (None: not published, dry run)
    mail: str | None  # "purge-notice", "purge-final-notice" or None (nothing to mail now)


@dataclass(repr=False, eq=False)
class AnnounceSummary(Record):
    """What the announce step did (or, on a dry run, would do)."""

    dry_run: bool = False
    users: dict[int, UserNotice] = field(default_factory=dict)
    refreshed: list[str] = field(default_factory=list)  # lines for the administrators
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the run exits 1 (lists not published, ...)

    @property
    def files(self) -> int:
        return sum(user.files for user in self.users.values())
