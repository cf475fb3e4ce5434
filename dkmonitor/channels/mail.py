"""The mail channel: users' warnings and notices, the administrators' summary.

On when ``[email] enabled = yes``. The work is in ``dkmonitor.notify``
(imported only when mail is on); this module only adapts it to the channel
protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dkmonitor.channels.base import AdminSummary, Channel, Delivery
from dkmonitor.config import Settings

if TYPE_CHECKING:
    from dkmonitor.notify.step import NotifyReport
    from dkmonitor.taskrun import AnnounceSummary, CleanSummary, TaskRun


class MailChannel(Channel):
    name = "email"

    def enabled(self, settings: Settings) -> bool:
        return settings.email.enabled

    def check(self, settings: Settings) -> None:
        """A broken template or address fails the run up front, before any mail goes out."""
        from dkmonitor.notify.step import check_templates

        check_templates(settings)

    def users(
        self, delivery: Delivery, run: TaskRun, cleaned: CleanSummary | None,
        announced: AnnounceSummary | None = None,
    ) -> NotifyReport | None:
        from dkmonitor.notify.step import notify_step

        # on a dry run the notify step only reads the mail log (for the interval rule)
        return notify_step(delivery.database, delivery.settings, run, cleaned,
                           announced=announced)

    def admins(self, delivery: Delivery, summary: AdminSummary) -> list[str]:
        if delivery.dry_run:
            return []
        from dkmonitor.notify.admin import admin_step

        return admin_step(delivery.database, delivery.settings, summary)


CHANNEL = MailChannel()
