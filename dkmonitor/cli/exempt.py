"""``dkmonitor exempt ...``: spare a user or a path from cleaning until a date."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click

from dkmonitor.clean.exemptions import ExemptionView
from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.render import table
from dkmonitor.clock import utcnow
from dkmonitor.db.exemptions import (
    add_exemption,
    list_exemptions,
    remove_exemption,
    who_is_asking,
)
from dkmonitor.units import iso_utc

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                "%Y-%m-%d %H:%M:%S"]


@click.group()
def exempt() -> None:
    """Spare a user or a path under a task's target from cleaning, until a date.

    Exempt files still count in the statistics; they are never announced,
    moved or deleted while the exemption is in force.
    """


@exempt.command("add")
@click.argument("task_name", metavar="TASK")
@click.option("--user", metavar="NAME", help="Exempt every file this user owns.")
@click.option("--path", metavar="PATH", help="Exempt everything at or below PATH (absolute).")
@click.option("--until", "until", required=True, metavar="DATE",
              help="Local YYYY-MM-DD[THH:MM[:SS]] it stops applying; a bare date covers "
              "that whole day.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown in `exempt list`).")
@pass_app
def add(app: AppContext, task_name: str, user: str | None, path: str | None,
        until: str, reason: str) -> None:
    """Exempt a user (--user) or a path (--path) of TASK until DATE."""
    expires = _expiry_utc(until)
    with app.database().session() as session:
        number = add_exemption(session, task_name, user=user, path=path, expires_at=expires,
                               reason=reason, created_by=who_is_asking(), now=utcnow())
    what = f"user {user}" if user is not None else f"path {path}"
    click.echo(f"exemption {number}: {what} in task {task_name} until "
               f"{_local(expires)}")


@exempt.command("list")
@click.argument("task_name", metavar="[TASK]", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@pass_app
def list_(app: AppContext, task_name: str | None, fmt: str) -> None:
    """Every exemption (of TASK), in force or expired."""
    with app.database().session() as session:
        items = list_exemptions(session, task_name, utcnow())
    if fmt == "json":
        click.echo(json.dumps([_record(item) for item in items], indent=2))
        return
    if not items:
        click.echo("no exemptions")
        return
    rows = [
        [str(i.id), i.task, f"user {i.user}" if i.user is not None else f"path {i.path}",
         _local(i.expires_at), "expired" if i.expired else "active", i.created_by, i.reason]
        for i in items
    ]
    click.echo(table(["id", "task", "exempt", "until", "state", "by", "reason"], rows,
                     right={0}))


@exempt.command("remove")
@click.argument("exemption_id", metavar="ID", type=click.IntRange(min=1, max=2**62))
@pass_app
def remove(app: AppContext, exemption_id: int) -> None:
    """Remove exemption ID (see `dkmonitor exempt list`)."""
    with app.database().session() as session:
        gone = remove_exemption(session, exemption_id)
    what = f"user {gone.user}" if gone.user is not None else f"path {gone.path}"
    click.echo(f"removed exemption {gone.id}: {what} in task {gone.task}")


def _expiry_utc(text: str) -> datetime:
    """Local time from the command line -> naive UTC; a bare date means the end of that day."""
    for fmt in DATE_FORMATS:
        try:
            value = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d":
            value += timedelta(days=1)
        return value.astimezone(UTC).replace(tzinfo=None)
    raise click.BadParameter(f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM",
                             param_hint="--until")


def _local(naive_utc: datetime) -> str:
    return naive_utc.replace(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def _record(item: ExemptionView) -> dict[str, object]:
    return {
        "id": item.id,
        "task": item.task,
        "username": item.user,
        "path": item.path,
        "expires_at": iso_utc(item.expires_at),
        "reason": item.reason,
        "created_by": item.created_by,
        "created_at": iso_utc(item.created_at),
        "expired": item.expired,
    }
