"""When a clean-up must stop: per-run budget, error breaker, purge target.

Each answers "stop now?" with a message (for the summary and the journal
reader) or None. Kept apart from the loop so the rules are easy to read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from dkmonitor.scan.disk import DiskUsage

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """max_files_per_run / max_bytes_per_run (0 = no bound), counting done actions.

    A file too big for the bytes left is passed over (smaller ones may still
    fit) rather than stopping everything behind one huge file.
    """

    max_files: int
    max_bytes: int
    files: int = 0
    bytes: int = 0
    passed_over: int = 0

    def exhausted(self) -> str | None:
        if self.max_files and self.files >= self.max_files:
            return f"max_files_per_run ({self.max_files}) reached"
        if self.max_bytes and self.bytes >= self.max_bytes:
            return f"max_bytes_per_run ({self.max_bytes} bytes) reached"
        return None

    def fits(self, size: int) -> bool:
        if self.max_bytes and self.bytes + size > self.max_bytes:
            self.passed_over += 1
            return False
        return True

    def spend(self, size: int) -> None:
        self.files += 1
        self.bytes += size


@dataclass
class Breaker:
    """Stops the run when more than max_failure_percent of actions fail.

    Only after min_actions attempts, so one early failure cannot stop a run;
    skips (file changed, in use) are not failures.
    """

    max_failure_percent: float
    min_actions: int
    done: int = 0
    failed: int = 0

    def record(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1

    def tripped(self) -> str | None:
        attempts = self.done + self.failed
        if attempts < self.min_actions or not attempts:
            return None
        share = self.failed * 100.0 / attempts
        if share > self.max_failure_percent:
            return (
                f"{self.failed} of {attempts} actions failed ({share:.0f}%, more than "
                f"max_failure_percent {self.max_failure_percent:g}%): cleaning stopped"
            )
        return None


class PurgeWatch:
    """Tells when disk use is no longer over purge_target_percent.

    Between real measurements (statvfs can be slow on network filesystems)
    the use is estimated by subtracting the bytes freed; the disk is measured
    again when the estimate says the target is reached, and at least every
    ``recheck_every`` actions. With ``measure`` None (dry run) only the
    estimate is used: nothing really changes on the disk.
    """

    def __init__(
        self,
        target_percent: float | None,
        start: DiskUsage,
        measure: Callable[[], DiskUsage] | None,
        recheck_every: int = 50,
    ):
        self.target = target_percent
        self.measure = measure
        self.recheck_every = recheck_every
        self._used = start.used
        self._available = start.available
        self._since = 0
        self.percent = start.percent

    def freed(self, nbytes: int) -> None:
        self._used = max(0, self._used - nbytes)
        self._available += nbytes
        self._since += 1
        self.percent = DiskUsage(0, self._used, self._available).percent

    def estimate(self) -> DiskUsage:
        """The disk use as last measured, less what was freed since."""
        return DiskUsage(0, self._used, self._available)

    def reached(self) -> str | None:
        if self.target is None:
            return None
        estimate_reached = not self.percent > self.target
        if self.measure is not None and (estimate_reached or self._since >= self.recheck_every):
            try:
                usage = self.measure()
            except OSError as exc:
                log.warning("cannot measure disk use: %s", exc)
            else:
                self._used, self._available, self._since = usage.used, usage.available, 0
                self.percent = usage.percent
        if not self.percent > self.target:
            return (
                f"disk use {self.percent:.2f}% is no longer over "
                f"purge_target_percent {self.target:g}%"
            )
        return None
