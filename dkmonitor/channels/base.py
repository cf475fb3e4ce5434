"""The channel protocol: what a delivery channel can be asked to do, with no-op defaults.

A channel is enabled by its own settings and is told about a run at three
moments (see the package docstring). It never raises for a delivery
problem: failures come back as one line each, so the scan already stored
and the other channels are never lost to one broken destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dkmonitor.config import Settings
from dkmonitor.records import FrozenRecord

if TYPE_CHECKING:
    from dkmonitor.db.engine import Database
    from dkmonitor.notify.step import NotifyReport
    from dkmonitor.runner import RunReport
    from dkmonitor.taskrun import AnnounceSummary, CleanSummary, TaskRun


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class Delivery(FrozenRecord):
    """What every channel call gets: the settings, the database (None when down)."""

    settings: Settings
    database: Database | None
    dry_run: bool = False


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class AdminSummary(FrozenRecord):
    """What the administrators are told at the end of a run.

    ``failures`` make the run fail (exit 1) and are always worth a message;
    ``unmailed`` (task name -> one line) are owners no channel could reach,
    worth a message on their own only now and then (the channel decides).
    ``notes`` are told whenever they happen: an emergency purge of unannounced
    files, users who dodge a purge by reading their files.
    """

    failures: tuple[str, ...] = ()
    unmailed: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # worth telling every time, not a failure (emergency purge)

    def __bool__(self) -> bool:
        return bool(self.failures or self.unmailed or self.notes)


def unmailed_line(task: str) -> str:
    """How a summary names a task whose owners could not be told (the line starts so)."""
    return f"task {task}: not mailed, no passwd entry: "


class Channel:
    """A delivery channel; override what applies. Every default does nothing."""

    name = "channel"

    def enabled(self, settings: Settings) -> bool:
        """Whether the settings turn this channel on."""
        return False

    def check(self, settings: Settings) -> None:
        """Check the channel's setup before the run (raise ConfigError: exit 2)."""

    def users(
        self, delivery: Delivery, run: TaskRun, cleaned: CleanSummary | None,
        announced: AnnounceSummary | None = None,
    ) -> NotifyReport | None:
        """Tell the users of one task's run; a report of what was delivered."""
        return None

    def admins(self, delivery: Delivery, summary: AdminSummary) -> list[str]:
        """Tell the administrators; the errors (each fails the run), if any."""
        return []

    def after_run(self, delivery: Delivery, report: RunReport) -> list[str]:
        """Anything at the end of a run; the errors (each fails the run), if any."""
        return []
