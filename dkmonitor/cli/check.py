"""`dkmonitor check`: a Nagios-style plugin over the central history database.

Exit status follows the monitoring-plugin convention, not dkmonitor's usual
one: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Since 2 means CRITICAL here, a
usage error, a bad settings file or an unreachable database are UNKNOWN (3),
reported on stdout (where the monitoring system reads) as one status line.
The check only reads: it never migrates or creates the database.
"""

from __future__ import annotations

import os
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.output import emit_json, output_options
from dkmonitor.db.healthdata import load_facts
from dkmonitor.db.maintenance import sqlite_file
from dkmonitor.db.models import utcnow
from dkmonitor.errors import DatabaseUnavailable, DkmError
from dkmonitor.health import DEFAULT_MAX_AGE_HOURS, UNKNOWN, Verdict, evaluate, unknown
from dkmonitor.healthnotify import require_mail


def _emit(verdict: Verdict, fmt: str) -> None:
    if fmt == "json":
        emit_json(verdict.as_json())
        return
    click.echo(verdict.status_line())
    if len(verdict.problems) > 1:  # Nagios long output: every problem on its own line
        for problem in verdict.problems:
            click.echo(problem.message)


class CheckCommand(click.Command):
    """Usage errors become an UNKNOWN status line and exit 3."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            fmt = "json" if "json" in args else "text"
            _emit(unknown(f"usage: {' '.join(exc.format_message().split())}", utcnow()), fmt)
            raise click.exceptions.Exit(UNKNOWN) from None


def _max_age(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise DkmError(f"--max-age {raw!r}: expected a number of hours > 0")
    return value


def _verdict(app: AppContext, max_age: str) -> Verdict:
    hours = _max_age(max_age)
    settings = app.settings
    path = sqlite_file(settings.database.url)
    if path is not None and not os.path.exists(path):
        return unknown(f"database {settings.database.safe_url} does not exist yet", utcnow())
    with app.database(migrate=False).session() as session:
        tasks, hosts = load_facts(session)
    return evaluate(tasks, hosts, utcnow(), hours)


@click.command("check", cls=CheckCommand)
@click.option(
    "--max-age",
    default=str(DEFAULT_MAX_AGE_HOURS).removesuffix(".0"),
    metavar="HOURS",
    show_default=True,
    help="A task's last successful full scan, and a host's last scan, may be this old.",
)
@output_options("text", "json")
@click.option(
    "--notify",
    is_flag=True,
    help="Also mail [email] admin_addresses when the state changes (and at most daily "
    "while it stays bad); the last state is kept in the state directory.",
)
@pass_app
@click.pass_context
def check(ctx: click.Context, app: AppContext, max_age: str, fmt: str, notify: bool) -> None:
    """Health for Nagios-style monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    CRITICAL: a disk over its critical threshold, a task whose last run
    failed, a host with enabled tasks that sent no scan for --max-age hours.
    WARNING: a disk over its warning threshold, a task without a successful
    full scan for --max-age hours. A task that never ran is judged from its
    creation: OK until --max-age hours after `task create`. UNKNOWN: no tasks
    or no scans yet, the database unreachable, or a usage error. Prints one
    status line with perfdata (then one line per further problem); --format
    json prints the same as a JSON object.
    """
    mailing = False  # --notify and mail is set up
    try:
        if notify:
            require_mail(app.settings)
            mailing = True
        verdict = _verdict(app, max_age)
    except DatabaseUnavailable as exc:
        verdict = unknown(str(exc), utcnow())
    except DkmError as exc:
        verdict = unknown(str(exc), utcnow())
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        verdict = unknown(f"database {app.settings.database.safe_url}: {reason}", utcnow())
    _emit(verdict, fmt)
    if mailing:
        _notify(app, verdict)
    ctx.exit(verdict.state)


def _notify(app: AppContext, verdict: Verdict) -> None:
    """Mail on a change; a mail that failed is one line on stderr (the exit status
    stays the verdict's: the monitoring system reads that)."""
    from dkmonitor.healthnotify import notify_health

    try:
        error = notify_health(app.settings, verdict, utcnow())
    except OSError as exc:
        error = f"check --notify: cannot keep its state in {app.settings.state_dir}: {exc}"
    if error:
        click.echo(f"dkmonitor: {error}", err=True)
