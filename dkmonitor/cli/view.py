"""`dkmonitor view ...`: read usage history back, as tables, JSON or CSV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.render import as_csv, as_json, change, percent, table
from dkmonitor.db.queries import JSON_KEYS, ViewRecord, system_records, user_records
from dkmonitor.units import human_bytes, human_count

FORMATS = click.Choice(["table", "json", "csv"])


def _format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "fmt",
        type=FORMATS,
        default="table",
        help="table for people; json or csv for other tools.",
    )(func)


def _history_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--history",
        type=click.IntRange(min=1, max=100_000),  # bounded: SQLite's LIMIT is a 64-bit int
        default=1,
        metavar="N",
        help="Show the last N scans of each host/target.",
    )(func)


@click.group()
def view() -> None:
    """Show stored usage per user or per system."""


@lru_cache(maxsize=4096)
def _scanned(when: datetime) -> str:
    """A scan's time for the table; cached, as `view users` shows each scan once per user."""
    return when.strftime("%Y-%m-%d %H:%M")


def _emit(records: Sequence[ViewRecord], fmt: str, users: bool, empty: str) -> None:
    if fmt == "json":
        click.echo(as_json([r.as_json() for r in records]))
        return
    if fmt == "csv":
        click.echo(as_csv(JSON_KEYS, [r.as_json() for r in records]))
        return
    if not records:
        click.echo(empty)
        return
    first = ["user"] if users else []
    headers = first + [
        "host",
        "target",
        "scanned",
        "files",
        "size",
        "change",
        "old files",
        "old size",
        "avg age",
        "disk",
    ]
    rows = [
        ([r.username or "-"] if users else [])
        + [
            r.hostname,
            r.target_path,
            _scanned(r.scanned_at),
            human_count(r.files),
            human_bytes(r.bytes),
            change(r.change_bytes),
            human_count(r.old_files),
            human_bytes(r.old_bytes),
            "-" if r.average_age_days is None else f"{r.average_age_days:.0f} d",
            percent(r.disk_use_percent),
        ]
        for r in records
    ]
    left = {0, 1, 2, 3} if users else {0, 1, 2}
    # termcolor already chose whether to colour (TTY, NO_COLOR, FORCE_COLOR): keep its choice
    click.echo(table(headers, rows, right=set(range(len(headers))) - left), color=True)


@view.command("users")
@_history_option
@_format_option
@pass_app
def users(app: AppContext, history: int, fmt: str) -> None:
    """Every user in the latest scan of every host and target."""
    with app.reader() as reader:
        records = user_records(reader, history=history)
    _emit(records, fmt, users=True, empty="no full scans stored yet")


@view.command("systems")
@_history_option
@_format_option
@pass_app
def systems(app: AppContext, history: int, fmt: str) -> None:
    """The latest scan of every host and target."""
    with app.reader() as reader:
        records = system_records(reader, history=history)
    _emit(records, fmt, users=False, empty="no full scans stored yet")


@view.group("all")
def view_all() -> None:
    """Aliases kept from the original dkmonitor: `view all users|systems`."""


view_all.add_command(users)
view_all.add_command(systems)


@view.command("user")
@click.argument("name")
@click.option("--host", metavar="H", help="Only this host.")
@_history_option
@_format_option
@pass_app
def user(app: AppContext, name: str, host: str | None, history: int, fmt: str) -> None:
    """User NAME's usage on every host and target (latest scan; --history N for more)."""
    with app.reader() as reader:
        records = user_records(reader, username=name, hostname=host, history=history)
    _emit(records, fmt, users=True, empty=f"no stored usage for user {name}")


@view.command("system")
@click.argument("host")
@click.option("--path", metavar="P", help="Only this target directory.")
@_history_option
@_format_option
@pass_app
def system(app: AppContext, host: str, path: str | None, history: int, fmt: str) -> None:
    """Host HOST's targets: totals of the latest scan (--history N for more)."""
    with app.reader() as reader:
        records = system_records(reader, hostname=host, path=path, history=history)
    _emit(records, fmt, users=False, empty=f"no stored scans for host {host}")
