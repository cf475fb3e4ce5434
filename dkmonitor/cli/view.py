"""`dkmonitor view ...`: read usage history back, as tables, JSON or CSV."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.output import emit, output_options
from dkmonitor.cli.render import change, percent, table
from dkmonitor.clock import utcnow
from dkmonitor.db.growth import GROWTH_KEYS, GrowthRecord, growth_records
from dkmonitor.db.queries import JSON_KEYS, ViewRecord, system_records, user_records
from dkmonitor.metrics import TABLE_METRICS
from dkmonitor.units import human_bytes


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


_WINDOW = re.compile(r"([1-9][0-9]{0,5})([hd])")


def _window(raw: str) -> timedelta:
    """``24h``, ``7d``, ``30d``...: hours or days back from now."""
    match = _WINDOW.fullmatch(raw.strip())
    if match is None:
        raise click.BadParameter(f"{raw!r}: expected hours or days, like 24h, 7d or 30d")
    count, unit = int(match[1]), match[2]
    return timedelta(hours=count) if unit == "h" else timedelta(days=count)


def _growth_table(records: Sequence[GrowthRecord]) -> str:
    headers = ["user", "task", "host", "target", "since", "size then", "size now", "growth"]
    rows = [
        [
            r.username,
            r.task,
            r.hostname,
            r.target_path,
            _scanned(r.since),
            human_bytes(r.bytes_before),
            human_bytes(r.bytes),
            change(r.growth_bytes),
        ]
        for r in records
    ]
    return table(headers, rows, right={5, 6, 7})


@view.command("growth")
@click.option(
    "--since",
    "window",
    default="24h",
    show_default=True,
    metavar="24h|7d|30d",
    help="The window, back from now: hours (h) or days (d).",
)
@click.option("--host", metavar="H", help="Only this host.")
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, metavar="N",
    help="Users shown per host/target.",
)
@output_options("table", "json", "csv")
@pass_app
def growth(app: AppContext, window: str, host: str | None, top: int, fmt: str) -> None:
    """The users whose bytes grew most over the window, per host and target.

    Compares each host/target's newest full scan with its newest full scan
    from before the window (or, on a shorter history, its oldest in the
    window). JSON/CSV keys: task, hostname, target_path, username, uid,
    since, scanned_at, bytes_before, bytes, growth_bytes.
    """
    span = _window(window)
    with app.reader() as reader:
        records = growth_records(reader, span, utcnow(), hostname=host, top=top)
    emit(
        fmt,
        records,
        GROWTH_KEYS,
        as_dict=GrowthRecord.as_json,
        table=_growth_table,
        empty=f"no user grew in the last {window}",
    )
