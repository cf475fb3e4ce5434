"""What one run of dkmonitor did: an outcome per task, and the run's report.

The runner (dkmonitor.runner) fills them in; the command line renders them
and turns them into the exit status; the channels read them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dkmonitor.records import Record

if TYPE_CHECKING:  # a quick run (cron, hourly) imports none of them
    from dkmonitor.notify.step import NotifyReport
    from dkmonitor.taskrun import AnnounceSummary, CleanSummary, TaskRun
    from dkmonitor.taskspec import TaskSpec


@dataclass(repr=False, eq=False)
class TaskOutcome(Record):
    task: TaskSpec
    kind: str  # quick | full
    status: str  # ok | failed | skipped | spooled
    message: str | None = None
    run: TaskRun | None = None
    clean: CleanSummary | None = None
    announce: AnnounceSummary | None = None
    problems: list[str] = field(default_factory=list)  # each fails the run (exit 1)
    deliveries: dict[str, NotifyReport] = field(default_factory=dict)  # channel -> report
    warnings: list[str] = field(default_factory=list)

    @property
    def notify(self) -> NotifyReport | None:
        """The mail channel's report, if mail is on."""
        return self.deliveries.get("email")

    @property
    def mail_failed(self) -> bool:
        """Any channel failed to deliver to this task's users."""
        return any(not report.ok for report in self.deliveries.values())


@dataclass(repr=False, eq=False)
class RunReport(Record):
    dry_run: bool
    outcomes: list[TaskOutcome] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # run-level lines for a person
    failed: bool = False  # run-level failure (spool, admin mail) beyond the outcomes

    @property
    def exit_code(self) -> int:
        if self.failed:
            return 1
        for outcome in self.outcomes:
            if outcome.status in ("failed", "spooled") or outcome.mail_failed:
                return 1
            if outcome.clean is not None and outcome.clean.error or outcome.problems:
                return 1
        return 0
