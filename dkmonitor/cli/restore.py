"""``dkmonitor restore TASK``: put back what a task moved (thin: parse, call, render)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from dkmonitor.clean.restore import RestoreItem, restore_task
from dkmonitor.units import counted, human_bytes

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                "%Y-%m-%d %H:%M:%S"]


@click.command("restore")
@click.argument("task")
@click.option("--user", "username", metavar="NAME", help="Only this user's files.")
@click.option("--since", type=click.DateTime(formats=DATE_FORMATS), metavar="DATE",
              help="Only files moved at or after DATE (local time, YYYY-MM-DD[THH:MM[:SS]]).")
@click.option("--dry-run", is_flag=True, help="List what would be restored; touch nothing.")
@click.pass_context
def restore(ctx: click.Context, task: str, username: str | None, since: datetime | None,
            dry_run: bool) -> None:
    """Move the files TASK moved back where they were, from the journal.

    A file that exists again at its original path is never overwritten: it
    is skipped and named. Exit 1 when a file could not be restored.
    """
    app: Any = ctx.obj  # the main group's context: .settings and .database()
    settings = app.settings
    database = app.database()
    summary = restore_task(
        database, settings, task, username=username, since=_to_utc(since), dry_run=dry_run,
        report=_show,
    )
    verb = "would restore" if dry_run else "restored"
    click.echo(f"{task}: {verb} {counted(summary.restored, 'file')} "
               f"({human_bytes(summary.bytes)}), "
               f"{summary.skipped} skipped, {summary.failed} failed")
    if summary.error:
        click.echo(f"dkmonitor: error: {summary.error}", err=True)
    ctx.exit(1 if summary.error or summary.failed else 0)


def _show(item: RestoreItem) -> None:
    original = _printable(item.original)
    if item.outcome == "done":
        click.echo(f"  {original}")
    elif item.outcome == "skipped":
        click.echo(f"  skipped {original}: {item.reason}", err=True)
    else:
        click.echo(f"  failed {original}: {item.reason}", err=True)


def _printable(path: str) -> str:
    """Non-UTF-8 bytes shown as \\xNN instead of crashing the terminal."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _to_utc(value: datetime | None) -> datetime | None:
    """A local date/time from the command line -> naive UTC, as the journal stores times."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)
