"""Plain value types a scan produces.

These cross process boundaries (parallel workers) and the scan/db seam, so
they hold only numbers and strings: no paths to re-resolve, no open handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dkmonitor.scan.age import DAY, AgeRule


@dataclass(frozen=True, init=False)
class ScanOptions:
    """What a scan needs to know; built by the runner from a task and settings.

    ``age`` is the task's :class:`~dkmonitor.scan.age.AgeRule`; callers that
    have no rule at hand may give ``old_days``, ``now`` and ``age_basis``
    instead, which make one (the triple is not kept anywhere else).
    """

    age: AgeRule
    exclude: tuple[str, ...] = ()
    one_file_system: bool = True
    workers: int = 1

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
    ) -> None:
        if age is None:
            if old_days is None or now is None:
                raise TypeError("ScanOptions needs age=AgeRule(...) or old_days= and now=")
            age = AgeRule(old_days, now, age_basis)
        object.__setattr__(self, "age", age)
        object.__setattr__(self, "exclude", tuple(exclude))
        object.__setattr__(self, "one_file_system", one_file_system)
        object.__setattr__(self, "workers", workers)


@dataclass
class Usage:
    """Counters for one owner, or for the whole target."""

    files: int = 0
    bytes: int = 0
    allocated_bytes: int = 0
    old_files: int = 0
    old_bytes: int = 0
    age_seconds: float = 0.0  # sum over files; the mean is derived

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

    @property
    def average_age_days(self) -> float:
        return self.age_seconds / self.files / DAY if self.files else 0.0


@dataclass
class ScanResult:
    """Outcome of walking one target: per-uid usage plus error accounting."""

    root: str
    by_uid: dict[int, Usage] = field(default_factory=dict)
    directories: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)  # first few, for logs/mail

    MAX_ERROR_SAMPLES = 20

    def note_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < self.MAX_ERROR_SAMPLES:
            self.error_samples.append(message)

    @property
    def total(self) -> Usage:
        whole = Usage()
        for usage in self.by_uid.values():
            whole.merge(usage)
        return whole
