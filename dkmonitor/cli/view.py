"""`dkmonitor view ...`: read usage history back, as tables, JSON or CSV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.output import emit, output_options
from dkmonitor.cli.render import change, percent, table
from dkmonitor.db.queries import JSON_KEYS, ViewRecord, system_records, user_records
from dkmonitor.metrics import TABLE_METRICS


def _history_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--history",
        type=click.IntRange(min=1),
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
    emit(
        fmt,
        records,
        JSON_KEYS,
        as_dict=ViewRecord.as_json,
        table=lambda shown: _table(shown, users),
        empty=empty,
    )


def _table(records: Sequence[ViewRecord], users: bool) -> str:
    # the task tells apart scans of one target by several tasks (same host, target, time)
    place = (["user"] if users else []) + ["task", "host", "target", "scanned"]
    headers = list(place)
    for m in TABLE_METRICS:
        headers += [m.header, "change"] if m.name == "bytes" else [m.header]
    headers.append("disk")
    rows = [_row(r, users) for r in records]
    left = set(range(len(place)))
    return table(headers, rows, right=set(range(len(headers))) - left)


def _row(record: ViewRecord, users: bool) -> list[str]:
    """One table row: the place, then the table metrics (the change after the size)."""
    cells = [record.username or "-"] if users else []
    cells += [record.task, record.hostname, record.target_path, _scanned(record.scanned_at)]
    for m in TABLE_METRICS:
        cells.append(m.human(getattr(record, m.name)))
        if m.name == "bytes":
            cells.append(change(record.change_bytes))
    cells.append(percent(record.disk_use_percent))
    return cells


@view.command("users")
@_history_option
@output_options("table", "json", "csv")
@pass_app
def users(app: AppContext, history: int, fmt: str) -> None:
    """Every user in the latest scan of every host and target."""
    with app.reader() as reader:
        records = user_records(reader, history=history)
    _emit(records, fmt, users=True, empty="no full scans stored yet")


@view.command("systems")
@_history_option
@output_options("table", "json", "csv")
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
@output_options("table", "json", "csv")
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
@output_options("table", "json", "csv")
@pass_app
def system(app: AppContext, host: str, path: str | None, history: int, fmt: str) -> None:
    """Host HOST's targets: totals of the latest scan (--history N for more)."""
    with app.reader() as reader:
        records = system_records(reader, hostname=host, path=path, history=history)
    _emit(records, fmt, users=False, empty=f"no stored scans for host {host}")
