"""Keeping the history database tidy: what is in it, and removing what is old.

Everything here works on dkmonitor's own tables only (``Base.metadata`` plus
alembic's ``alembic_version``), so a PostgreSQL database shared with other
software is never touched beyond them. ``inspect_database`` is read-only and
never creates anything: ``database status`` must be safe to run against a
database that does not exist yet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    MetaData,
    Table,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dkmonitor.db.backends import (
    Backend,
    backend_for,
    error_line,
    is_unavailable,
    unavailable_message,
)
from dkmonitor.db.engine import Database, make_engine
from dkmonitor.db.migrate import current_revision, head_revision, pending_revisions
from dkmonitor.db.models import Action, Base, Notification, Scan, Task, UserStat, utcnow
from dkmonitor.dburl import DatabaseURL, as_url
from dkmonitor.errors import DatabaseUnavailable, DkmError

if TYPE_CHECKING:
    from dkmonitor.config import Settings

log = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version"

# What `database clean DAYS --table T` may name, and which column dates a row.
# Without --table only the scan history (scans and their user_stats) is cleaned:
# tasks, the mail log and the action journal are kept unless asked for.
CLEANABLE = ("scans", "user_stats", "notifications", "actions", "tasks")
DEFAULT_CLEAN = ("scans",)


@dataclass(frozen=True)
class DatabaseStatus:
    """What `database status` reports. ``exists`` False: nothing else is filled."""

    url: str
    backend: str
    exists: bool
    revision: str | None = None
    head: str | None = None
    pending: tuple[str, ...] = ()
    size_bytes: int | None = None
    scans: int = 0
    oldest_scan: datetime | None = None
    newest_scan: datetime | None = None
    hosts: int = 0
    tables: dict[str, int] = field(default_factory=dict)


def sqlite_file(url: str | DatabaseURL) -> str | None:
    """The file of a file-backed SQLite URL, else None."""
    return as_url(url).sqlite_file()


def inspect_database(url: str | DatabaseURL) -> DatabaseStatus:
    """Read-only look at the database behind ``url``.

    A missing SQLite file, or a PostgreSQL database that the server says does
    not exist, gives ``exists=False`` (no file or database is created); any
    other connection failure raises DatabaseUnavailable.
    """
    parsed = as_url(url)
    safe = str(parsed)
    backend = backend_for(parsed)
    path = parsed.sqlite_file()
    if path is not None and not os.path.exists(path):
        return DatabaseStatus(url=safe, backend=backend.name, exists=False)
    engine = make_engine(parsed)
    try:
        with engine.connect() as conn:
            return _status(conn, safe, backend, path)
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            raise
        if backend.name == "postgresql" and "does not exist" in error_line(exc):
            return DatabaseStatus(url=safe, backend=backend.name, exists=False)
        raise DatabaseUnavailable(unavailable_message(parsed, exc)) from None
    finally:
        engine.dispose()


def _status(conn: Connection, safe: str, backend: Backend, path: str | None) -> DatabaseStatus:
    names = set(inspect(conn).get_table_names())
    revision = current_revision(conn) if VERSION_TABLE in names else None
    pending = tuple(pending_revisions(conn))
    if backend.size_query is not None:
        size = conn.execute(text(backend.size_query)).scalar_one()
    elif path is not None:
        size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    else:
        size = 0  # in memory
    counts = _counts(conn, names)
    oldest = newest = None
    hosts = 0
    if "scans" in names:
        oldest, newest, hosts = conn.execute(
            select(
                func.min(Scan.started_at),
                func.max(Scan.started_at),
                func.count(func.distinct(Scan.hostname)),
            )
        ).one()
    return DatabaseStatus(
        url=safe,
        backend=backend.name,
        exists=True,
        revision=revision,
        head=head_revision(),
        pending=pending,
        size_bytes=int(size),
        scans=counts.get("scans", 0),
        oldest_scan=oldest,
        newest_scan=newest,
        hosts=int(hosts or 0),
        tables=counts,
    )


def _known_tables() -> list[str]:
    """dkmonitor's tables, parents before children, then alembic's."""
    return [table.name for table in Base.metadata.sorted_tables] + [VERSION_TABLE]


def _counts(conn: Connection, present: set[str]) -> dict[str, int]:
    counts = {}
    for name in _known_tables():
        if name in present:
            table = Table(name, MetaData())
            counts[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
    return counts


# ---------------------------------------------------------------- removing rows


def _rowcount(result: Any) -> int:
    """Rows a DELETE/UPDATE touched (a CursorResult's rowcount; typed loosely by SQLAlchemy)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _cutoff(days: int, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(days=days)


def check_tables(tables: tuple[str, ...]) -> tuple[str, ...]:
    """Validate table names given on the command line (DkmError naming the bad one)."""
    for name in tables:
        if name not in CLEANABLE:
            raise DkmError(f"--table {name!r}: no such table; use one of {', '.join(CLEANABLE)}")
    return tuple(dict.fromkeys(tables))


def _delete_scans(session: Session, where: ColumnElement[bool]) -> int:
    """Delete scans matching ``where`` and their user rows; journal/mail rows keep theirs.

    user_stats are deleted explicitly rather than by ON DELETE CASCADE, so the
    result does not depend on SQLite's foreign_keys pragma; notifications and
    actions point at scans with ON DELETE SET NULL and are cleared the same way.
    """
    ids = select(Scan.id).where(where).scalar_subquery()
    session.execute(delete(UserStat).where(UserStat.scan_id.in_(ids)))
    for model in (Notification, Action):
        table = cast(Table, model.__table__)
        session.execute(table.update().where(table.c.scan_id.in_(ids)).values(scan_id=None))
    result = session.execute(delete(Scan).where(where))
    return _rowcount(result)


def purge_history(
    session: Session,
    older_than_days: int,
    *,
    hostname: str | None = None,
    now: datetime | None = None,
) -> int:
    """Remove scans (with their per-user rows) started more than N days ago.

    ``hostname`` limits the purge to one host's scans: the automatic purge at
    the end of a run only tidies its own host's history, so many hosts
    finishing at once never contend for the same rows. Returns scans removed.
    """
    where = Scan.started_at < _cutoff(older_than_days, now)
    if hostname is not None:
        where = where & (Scan.hostname == hostname)
    return _delete_scans(session, where)


def clean_tables(
    session: Session,
    older_than_days: int,
    tables: tuple[str, ...] = DEFAULT_CLEAN,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """`database clean DAYS [--table T]`: rows older than DAYS; counts per table.

    - scans: scans started before the cutoff, with their user_stats;
    - user_stats: only the per-user detail of those scans (totals stay);
    - notifications, actions: rows created before the cutoff;
    - tasks: tasks neither changed nor scanned since the cutoff (abandoned).
    """
    cutoff = _cutoff(older_than_days, now)
    removed: dict[str, int] = {}
    for name in check_tables(tables):
        if name == "scans":
            user_rows = session.scalar(
                select(func.count(UserStat.id))
                .join(Scan, UserStat.scan_id == Scan.id)
                .where(Scan.started_at < cutoff)
            )
            removed["scans"] = _delete_scans(session, Scan.started_at < cutoff)
            removed["user_stats"] = removed.get("user_stats", 0) + int(user_rows or 0)
        elif name == "user_stats":
            old = select(Scan.id).where(Scan.started_at < cutoff).scalar_subquery()
            result = session.execute(delete(UserStat).where(UserStat.scan_id.in_(old)))
            removed["user_stats"] = removed.get("user_stats", 0) + _rowcount(result)
        elif name in ("notifications", "actions"):
            model = Notification if name == "notifications" else Action
            result = session.execute(delete(model).where(model.created_at < cutoff))
            removed[name] = _rowcount(result)
        else:  # tasks
            recent = select(Scan.task_name).where(Scan.started_at >= cutoff)
            result = session.execute(
                delete(Task).where(Task.updated_at < cutoff, Task.name.not_in(recent))
            )
            removed["tasks"] = _rowcount(result)
    return removed


def empty_table(session: Session, name: str) -> int:
    """`database drop --table T`: remove every row of T, keep the table.

    The table itself stays so the schema remains at its alembic revision (a
    dropped table would not come back with `database upgrade`).
    """
    check_tables((name,))
    if name == "scans":
        return _delete_scans(session, Scan.id.is_not(None))
    model = {"user_stats": UserStat, "notifications": Notification, "actions": Action}.get(name)
    result = session.execute(delete(model if model is not None else Task))
    return _rowcount(result)


def drop_all(database: Database) -> list[str]:
    """`database drop --all`: drop dkmonitor's tables and alembic_version.

    Afterwards `database upgrade` (or any command) rebuilds an empty schema.
    Returns the names of the tables dropped.
    """
    known = set(_known_tables())
    with database.engine.begin() as conn:
        reflected = MetaData()
        reflected.reflect(conn, only=lambda name, _meta: name in known)
        names = [table.name for table in reversed(reflected.sorted_tables)]
        reflected.drop_all(conn)
    return names


class _Outcome(Protocol):
    kind: str  # quick | full: a runner.TaskOutcome


def auto_purge(database: Database | None, settings: Settings, outcomes: Iterable[_Outcome]) -> int:
    """The purge at the end of a run (``[database] purge_after_days``) — Runner.finish.

    ``database`` is None for a dry run or when the database is down;
    ``outcomes`` are the run's task outcomes: only a run that did a full scan
    purges (the nightly one), and only this host's scans. Nothing happens when
    purging is off (0); a failure is logged and never fails the run.
    """
    days = settings.database.purge_after_days
    if database is None or days <= 0 or all(o.kind != "full" for o in outcomes):
        return 0
    try:
        with database.session() as session:
            removed = purge_history(session, days, hostname=settings.hostname)
    except SQLAlchemyError as exc:
        log.error(
            "purging scans of %s older than %d days failed: %s",
            settings.hostname,
            days,
            error_line(exc, database.parsed_url),
        )
        return 0
    if removed:
        log.info("purged %d scan(s) of %s older than %d days", removed, settings.hostname, days)
    return removed
