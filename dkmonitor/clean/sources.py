"""Where the cleaner's candidates come from: a walk, or root's record of announcements.

Without --notice-days the candidates are every old file of a fresh walk
(``select.iter_old_files``), largest-and-oldest first. With it, only files
announced at least ``notice_days`` earlier (``announce.record``), and only
while they are not exempt or excluded now; each is re-checked before the
action (still the same old regular file, same size, mtime and owner:
``verify.recheck``). When disk use is over the task's --emergency threshold
after those, a second phase may take unannounced old files from a walk,
largest-and-oldest first, down to the purge target (or the critical
threshold); what it takes is counted apart so the mails and the
administrators' summary can say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dkmonitor.announce.record import AnnounceRecord
from dkmonitor.clean.exclude import is_excluded
from dkmonitor.clean.limits import PurgeWatch
from dkmonitor.clean.select import Candidate, SelectOptions, candidate_batches, iter_old_files
from dkmonitor.scan.age import DAY
from dkmonitor.scan.disk import DiskUsage
from dkmonitor.taskspec import TaskSpec

WALK = "walk"
ANNOUNCED = "announced"
EMERGENCY = "emergency"


@dataclass
class Sources:
    """The batches one clean-up works through, and which phase it is in."""

    task: TaskSpec
    root_fd: int
    options: SelectOptions
    chunk: int
    record: AnnounceRecord | None = None
    phase: str = WALK
    emergency: str | None = None  # why unannounced files were taken, once they are
    handled: set[tuple[int, int]] = field(default_factory=set)  # announced, looked at

    def batches(self, watch: PurgeWatch, fresh_watch: Callable[[float, PurgeWatch], PurgeWatch]
                ) -> Iterator[tuple[list[Candidate], PurgeWatch]]:
        """(batch, the watermark to stop at) in order; the caller may stop at any point."""
        if self.record is None:
            for batch in candidate_batches(self._walk, self.chunk):
                yield batch, watch
            return
        self.phase = ANNOUNCED
        for batch in candidate_batches(self._announced, self.chunk):
            yield batch, watch
        limit = self.task.emergency_percent
        if limit is None or watch.reached() or not watch.percent > limit:
            return
        self.phase = EMERGENCY
        down_to = self.task.purge_target_percent or self.task.usage_critical_threshold
        self.emergency = (
            f"disk use {watch.percent:.1f}% was over the emergency threshold ({limit:g}%): "
            f"unannounced old files were taken, largest and oldest first, down to {down_to:g}%"
        )
        emergency_watch = fresh_watch(down_to, watch)
        for batch in candidate_batches(self._unannounced, self.chunk):
            yield batch, emergency_watch

    def _walk(self) -> Iterator[Candidate]:
        return iter_old_files(self.root_fd, self.options)

    def _announced(self) -> Iterator[Candidate]:
        from dkmonitor.announce.step import candidate_of  # the record's own conversion

        assert self.record is not None
        options = self.options
        matured = options.now - self.task.notice_days * DAY
        for entry in self.record.matured(matured):
            cand = candidate_of(entry, options.now)
            if options.exempt.covers(cand.uid, cand.parts):
                continue
            if options.exclude and is_excluded(
                options.exclude, cand.abs_path(options.target), cand.name
            ):
                continue
            self.handled.add((cand.dev, cand.ino))
            yield cand

    def _unannounced(self) -> Iterator[Candidate]:
        for cand in iter_old_files(self.root_fd, self.options):
            if (cand.dev, cand.ino) not in self.handled:
                yield cand


def watch_factory(measure: Callable[[], DiskUsage] | None
                  ) -> Callable[[float, PurgeWatch], PurgeWatch]:
    """A PurgeWatch for a new target, from the disk use now (a dry run: the estimate)."""
    def fresh(target: float, previous: PurgeWatch) -> PurgeWatch:
        usage = measure() if measure is not None else previous.estimate()
        return PurgeWatch(target, usage, measure)
    return fresh
