"""Storing a scan record and reading the tasks with plain SQL, without SQLAlchemy.

A quick run from cron takes a few milliseconds of work, but importing
SQLAlchemy and opening an engine took most of a second of each process.
When the schema is already at head (``dkmonitor.db.engine.open_current``),
the runner stores its ``ScanRecord`` and reads its tasks here, through the
DB-API connection that ``dkmonitor.db.readonly`` opens, in one transaction.
The effect is the same as ``store.store_scan`` and ``tasks.list_tasks``:
tests/test_plain_write.py stores one record both ways on SQLite and
PostgreSQL and compares every column of every row.

The columns are the record's own fields (``store_scan`` builds the ORM rows
from the same fields), and ``TABLES`` names their tables;
tests/test_plain_write.py checks both against ``dkmonitor.db.models`` so
the two declarations cannot drift apart.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dkmonitor.clock import naive_utc
from dkmonitor.db.backends import BACKENDS, is_database_error, placeholders
from dkmonitor.db.readonly import ReadConnection
from dkmonitor.db.store import ScanRecord
from dkmonitor.enums import PENDING
from dkmonitor.taskspec import TASK_FIELDS, TaskSpec

if TYPE_CHECKING:
    from dkmonitor.clean.exemptions import ExemptionView
    from dkmonitor.db.engine import Database

# The table of a ScanRecord ("scans") and of each of its row tuples.
SCAN_TABLE = "scans"
TABLES: dict[str, str] = {
    "users": "user_stats",
    "histograms": "scan_histograms",
    "top_directories": "scan_top_directories",
}
TASK_TABLE = "tasks"
ACTION_TABLE = "actions"  # the cleaner's journal (dkmonitor.clean.journal)

# TaskSpec's bool fields: SQLite hands back 0/1 where SQLAlchemy's Boolean gives bools.
_BOOL_FIELDS = frozenset(f.name for f in fields(TaskSpec) if f.type in (bool, "bool"))


def _value(connection: ReadConnection, value: object) -> object:
    """A parameter as SQLAlchemy's column types bind it (times: dkmonitor.db.utctime)."""
    if isinstance(value, datetime):
        return connection.time_param(value)
    return value


def _insert(connection: ReadConnection, cursor: Any, table: str, row: dict[str, Any],
            returning: bool = False) -> None:
    names = list(row)
    sql = (f"INSERT INTO {table} ({', '.join(names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    if returning:
        sql += " RETURNING id"
    sql = placeholders(sql, BACKENDS[connection.backend])
    cursor.execute(sql, tuple(_value(connection, row[name]) for name in names))


def _columns(item: Any) -> dict[str, Any]:
    """A flat dataclass's fields by name: ``asdict`` without its deep copy.

    Every field of a record and of its rows is a number, a string or a
    datetime; ``asdict`` deep-copied them, the row tuples too, only for the
    scans row to drop them: a third of storing a 100k-file scan.
    """
    return {f.name: getattr(item, f.name) for f in fields(item)}


def scan_columns(record: ScanRecord) -> dict[str, Any]:
    """The scans row of a record: every field but the row tuples."""
    return {k: v for k, v in _columns(record).items() if k not in TABLES}


def store_scan_plain(connection: ReadConnection, record: ScanRecord) -> int:
    """Store the record and its rows in one transaction; returns the scan id.

    A record already stored (same run_id) is left alone and its id returned,
    as ``store_scan`` does. Any error rolls the transaction back and is raised.
    """
    dbapi = connection.connection
    cursor = dbapi.cursor()
    try:
        existing = connection.rows(f"SELECT id FROM {SCAN_TABLE} WHERE run_id = ?",
                                   (record.run_id,))
        if existing:
            dbapi.rollback()
            return int(existing[0][0])
        postgresql = connection.backend == "postgresql"
        _insert(connection, cursor, SCAN_TABLE, scan_columns(record), returning=postgresql)
        scan_id = int(cursor.fetchone()[0] if postgresql else cursor.lastrowid)
        for key, table in TABLES.items():
            for item in getattr(record, key):
                _insert(connection, cursor, table, {"scan_id": scan_id, **_columns(item)})
        dbapi.commit()
        return scan_id
    except BaseException:
        dbapi.rollback()
        raise
    finally:
        cursor.close()


def list_tasks_plain(connection: ReadConnection) -> list[TaskSpec]:
    """Every saved task, ordered as ``tasks.list_tasks`` orders them."""
    try:
        rows = connection.rows(
            f"SELECT {', '.join(TASK_FIELDS)} FROM {TASK_TABLE} ORDER BY hostname, name"
        )
    finally:
        connection.connection.rollback()  # end the read; the next write starts afresh
    return [_task(row) for row in rows]


def _task(row: tuple[Any, ...]) -> TaskSpec:
    values: dict[str, Any] = {
        name: bool(value) if name in _BOOL_FIELDS and value is not None else value
        for name, value in zip(TASK_FIELDS, row, strict=True)
    }
    return TaskSpec(**values)


def store_record(database: Database, record: ScanRecord) -> int:
    """Store one record in one transaction: plain SQL when the schema is at head."""
    if database.plain is not None:
        return store_scan_plain(database.plain, record)
    from dkmonitor.db.store import store_scan  # its SQLAlchemy, only on this path

    with database.session() as session:
        return store_scan(session, record)


def every_task(database: Database) -> list[TaskSpec]:
    """Every saved task: plain SQL when the schema is at head, else through SQLAlchemy."""
    if database.plain is not None:
        return list_tasks_plain(database.plain)
    from dkmonitor.db.tasks import list_tasks  # its SQLAlchemy, only on this path

    with database.session() as session:
        return list_tasks(session)


def nothing_pending(database: Database | None, task_name: str, hostname: str) -> bool:
    """True when the task surely has no pending journal row to reconcile.

    Then ``clean.step.reconcile_step`` would find nothing, and a full run
    starts its walk without importing the cleaner and SQLAlchemy. False
    when unsure (no plain connection, a database error): reconcile then.
    """
    if database is None:
        return True  # reconcile_step does nothing without a database either
    if database.plain is None:
        return False
    try:
        rows = database.plain.rows(
            f"SELECT count(*) FROM {ACTION_TABLE} "
            "WHERE outcome = ? AND hostname = ? AND task_name = ?",
            (PENDING, hostname, task_name),
        )
    except Exception as exc:
        if not is_database_error(exc):
            raise
        return False
    finally:
        database.plain.connection.rollback()
    return int(rows[0][0]) == 0


EXEMPTION_TABLE = "exemptions"


def exemptions_plain(connection: ReadConnection, task_name: str, now: datetime
                     ) -> list[ExemptionView]:
    """``db.exemptions.list_exemptions`` for one task, in plain SQL."""
    from dkmonitor.clean.exemptions import ExemptionView
    from dkmonitor.clock import parse_time

    try:
        rows = connection.rows(
            "SELECT id, task_name, username, path, expires_at, reason, created_by, "
            f"created_at, uid FROM {EXEMPTION_TABLE} WHERE task_name = ? ORDER BY id",
            (task_name,))
    finally:
        connection.connection.rollback()
    views = []
    for ident, task, user, path, expires_at, reason, by, created_at, uid in rows:
        expires = parse_time(expires_at)
        views.append(ExemptionView(
            id=ident, task=task, user=user, path=path, expires_at=expires, reason=reason,
            created_by=by, created_at=parse_time(created_at), expired=expires <= naive_utc(now),
            uid=uid))
    return views
