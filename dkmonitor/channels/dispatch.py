"""The one place that calls the delivery channels (borgmatic's ``hooks/dispatch``).

``CHANNELS`` lists every channel; only those their settings enable are
called, in that order. The runner calls these functions and nothing else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dkmonitor.channels.base import AdminSummary, Channel, Delivery
from dkmonitor.channels.mail import CHANNEL as MAIL
from dkmonitor.channels.metrics import CHANNEL as METRICS
from dkmonitor.config import Settings

if TYPE_CHECKING:
    from dkmonitor.notify.step import NotifyReport
    from dkmonitor.runner import RunReport
    from dkmonitor.taskrun import AnnounceSummary, CleanSummary, TaskRun

log = logging.getLogger(__name__)

CHANNELS: tuple[Channel, ...] = (MAIL, METRICS)


def enabled(settings: Settings) -> tuple[Channel, ...]:
    """The channels these settings turn on."""
    return tuple(channel for channel in CHANNELS if channel.enabled(settings))


def check(settings: Settings) -> None:
    """Each enabled channel's setup, before the run; raises ConfigError."""
    for channel in enabled(settings):
        channel.check(settings)


def users(
    delivery: Delivery, run: TaskRun, cleaned: CleanSummary | None,
    announced: AnnounceSummary | None = None,
) -> dict[str, NotifyReport]:
    """Channel name -> its report, for each channel that told the run's users something."""
    reports = {}
    for channel in enabled(delivery.settings):
        report = channel.users(delivery, run, cleaned, announced)
        if report is not None:
            reports[channel.name] = report
            summary = report.summary()
            if summary:
                log.error(summary)
    return reports


def admins(delivery: Delivery, summary: AdminSummary) -> list[str]:
    """Tell the administrators through every channel; their errors."""
    errors: list[str] = []
    if summary:
        for channel in enabled(delivery.settings):
            errors += channel.admins(delivery, summary)
    return errors


def after_run(delivery: Delivery, report: RunReport) -> list[str]:
    """Every channel's end-of-run hook; their errors (logged here)."""
    errors: list[str] = []
    for channel in enabled(delivery.settings):
        for error in channel.after_run(delivery, report):
            log.error("%s", error)
            errors.append(error)
    return errors
