"""`dkmonitor database ...`: inspect and maintain the history database.

`list` and `status` only read (they never create or migrate the database);
every other subcommand opens it at the newest schema, as the rest of
dkmonitor does. The work is in ``dkmonitor.db.maintenance`` and
``dkmonitor.db.export``; this module parses and renders.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.cli.output import emit, emit_json, output_options
from dkmonitor.cli.render import table
from dkmonitor.db import maintenance, spool
from dkmonitor.db.engine import open_database
from dkmonitor.db.export import EXPORT_KEYS, export_records
from dkmonitor.db.migrate import head_revision
from dkmonitor.errors import DkmError
from dkmonitor.units import human_bytes, iso_utc


@click.group()
def database() -> None:
    """Inspect and maintain the history database."""


def _when(moment: datetime | None) -> str:
    return moment.isoformat(sep=" ", timespec="seconds") + " UTC" if moment else "-"


@database.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """dkmonitor's tables with their row counts."""
    status = maintenance.inspect_database(app.settings.database.url)
    if not status.exists:
        click.echo(f"{status.url}: does not exist yet (no tables)")
        return
    if not status.tables:
        click.echo(f"{status.url}: no dkmonitor tables (run `dkmonitor database upgrade`)")
        return
    click.echo(table(["table", "rows"], [[n, str(c)] for n, c in status.tables.items()]))


@database.command("status")
@output_options("text", "json", help="text for people; json for monitoring and scripts.")
@pass_app
def status(app: AppContext, fmt: str) -> None:
    """Where the database is, its schema revision and size, the scans it holds."""
    settings = app.settings
    info = maintenance.inspect_database(settings.database.url)
    waiting = len(spool.spooled_files(settings.state_dir))
    if fmt == "json":
        emit_json({
            "database": info.url,
            "backend": info.backend,
            "exists": info.exists,
            "revision": info.revision,
            "head": info.head,
            "pending": list(info.pending),
            "size_bytes": info.size_bytes,
            "scans": info.scans,
            "hosts": info.hosts,
            "oldest_scan": iso_utc(info.oldest_scan) if info.oldest_scan else None,
            "newest_scan": iso_utc(info.newest_scan) if info.newest_scan else None,
            "spooled_runs": waiting,
            "spool_dir": str(spool.spool_dir(settings.state_dir)),
        })
        return
    lines = [f"database:  {info.url}"]
    if not info.exists:
        lines.append(
            "status:    does not exist yet (`dkmonitor database upgrade` or a run creates it)"
        )
    else:
        pending = ", ".join(info.pending) if info.pending else "none"
        lines += [
            f"revision:  {info.revision or 'none (empty database)'} (newest {info.head})",
            f"pending:   {pending}",
            f"size:      {human_bytes(info.size_bytes or 0)}",
            f"scans:     {info.scans} from {info.hosts} host(s)",
            f"oldest:    {_when(info.oldest_scan)}",
            f"newest:    {_when(info.newest_scan)}",
        ]
    lines.append(f"spool:     {waiting} run(s) waiting in {spool.spool_dir(settings.state_dir)}")
    click.echo("\n".join(lines))


@database.command("upgrade")
@pass_app
def upgrade(app: AppContext) -> None:
    """Create the schema, or bring it to the newest version."""
    db = app.database()
    click.echo(f"{db.url}: schema at revision {head_revision()}")


_TABLES_HELP = ", ".join(maintenance.CLEANABLE)


@database.command("clean")
@click.argument("days")
@click.option("--table", "tables", multiple=True, metavar="T", help=f"One of {_TABLES_HELP}.")
@click.option("--all", "all_", is_flag=True, help="Every table above.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@pass_app
def clean(app: AppContext, days: str, tables: tuple[str, ...], all_: bool, yes: bool) -> None:
    """Remove history older than DAYS days (0: all of it).

    By default only scans (with their per-user rows); tasks, the mail log
    (notifications) and the action journal (actions) are kept unless named
    with --table (repeatable) or --all. For tasks, "older" means neither
    changed nor scanned for DAYS days. Removing old actions makes those moves
    impossible to undo with `dkmonitor restore`. On a terminal it says what
    it will remove and asks first, unless --yes; from cron it does not ask.
    """
    if not days.isdigit():
        raise DkmError(f"database clean: DAYS {days!r}: expected a whole number of days >= 0")
    if all_ and tables:
        raise DkmError("database clean: --table and --all are exclusive")
    chosen = maintenance.CLEANABLE if all_ else (tables or maintenance.DEFAULT_CLEAN)
    maintenance.check_tables(chosen)
    if not yes and sys.stdin.isatty():
        click.echo(_clean_plan(int(days), chosen))
        if not click.confirm("Remove them?", default=False):
            raise click.Abort()
    with app.database().session() as session:
        removed = maintenance.clean_tables(session, int(days), chosen)
    summary = ", ".join(f"{count} {name}" for name, count in removed.items())
    click.echo(f"removed rows older than {int(days)} days: {summary}")


def _clean_plan(days: int, tables: tuple[str, ...]) -> str:
    """What `database clean` is about to remove, in words."""
    named = ", ".join(
        "scans (with their per-user rows)" if name == "scans" else name for name in tables
    )
    if days == 0:
        return f"This removes EVERY row of: {named} (DAYS is 0: the whole history)."
    return f"This removes the rows older than {days} days of: {named}."


@database.command("drop")
@click.option("--table", metavar="T", help=f"Empty one table: {_TABLES_HELP}.")
@click.option(
    "--all", "all_", is_flag=True, help="Drop every dkmonitor table and the schema version."
)
@click.option("--yes", is_flag=True, help="Really do it (required).")
@pass_app
def drop(app: AppContext, table: str | None, all_: bool, yes: bool) -> None:
    """Delete history for good: --table T removes all its rows, --all drops every table.

    --table keeps the (empty) table so the schema stays at its version; after
    --all, `dkmonitor database upgrade` rebuilds an empty schema. Refuses
    without --yes.
    """
    if bool(table) == all_:
        raise DkmError("database drop: give exactly one of --table T or --all")
    if table:
        maintenance.check_tables((table,))
    if not yes:
        what = f"every row of table {table}" if table else "every dkmonitor table"
        raise DkmError(f"database drop: refusing to delete {what} without --yes")
    if table:
        with app.database().session() as session:
            count = maintenance.empty_table(session, table)
        click.echo(f"removed all {count} row(s) of table {table}")
        return
    info = maintenance.inspect_database(app.settings.database.url)
    if not info.exists:
        click.echo(f"{info.url}: does not exist; nothing to drop")
        return
    db = open_database(app.settings.database.url, migrate=False)
    try:
        dropped = maintenance.drop_all(db)
    finally:
        db.dispose()
    click.echo(
        f"{info.url}: dropped {len(dropped)} table(s)"
        + (f" ({', '.join(dropped)})" if dropped else "")
        + "; `dkmonitor database upgrade` rebuilds the schema"
    )


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().removesuffix("Z"))
    except ValueError:
        raise DkmError(
            f"database export: --since {raw!r}: expected a date like 2024-05-01 "
            "or 2024-05-01T12:00 (UTC)"
        ) from None
    if moment.tzinfo is not None:  # stored times are naive UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@database.command("export")
@click.option("--since", metavar="DATE", help="Only scans started at or after DATE (UTC).")
@output_options("csv", "json", required=True)
@pass_app
def export(app: AppContext, since: str | None, fmt: str) -> None:
    """The scan history, for analysis elsewhere (oldest scan first).

    One record per scan for the whole target (username and uid empty), then
    one per user of that scan. Columns: run_id, kind (quick|full), status
    (ok|failed), task, hostname, target_path, username, uid, scanned_at (ISO
    8601, UTC), files, bytes, allocated_bytes, old_files, old_bytes,
    average_age_days, disk_use_percent, errors, inodes, directories. JSON is a list of objects with
    these keys; CSV has a header row and raw numbers.
    """
    start = _since(since)
    with app.database().session() as session:
        records = export_records(session, start)
        emit(fmt, records, EXPORT_KEYS, as_dict=dict, indent=None)  # one record per line


@database.command("flush-spool")
@pass_app
def flush_spool(app: AppContext) -> None:
    """Store the runs spooled while the database was unreachable."""
    count = spool.replay(app.database(), app.settings.state_dir)
    click.echo(f"stored {count} spooled run(s)")
