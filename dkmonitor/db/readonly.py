"""A plain DB-API connection for reading history, without SQLAlchemy.

``dkmonitor view`` is typed by people and should answer at once; its queries
take milliseconds, but importing SQLAlchemy took a quarter of a second of
each process. When the schema is already at ``HEAD_REVISION`` — nearly
always — ``connect_current`` opens the database with the driver alone
(stdlib ``sqlite3``, or ``psycopg2``) and the view reads through it. A new
or older database gets ``None`` back: the caller then takes the usual path
(``open_database``, which creates and migrates) and reads through that
engine's raw connection instead. The queries are the same either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

from dkmonitor.clock import naive_utc
from dkmonitor.db.backends import (
    BACKENDS,
    SQLITE_BUSY_TIMEOUT,
    backend_for,
    dbapi_kwargs,
    driver_module,
    is_unavailable,
    placeholders,
    set_up_session,
    unavailable_message,
)
from dkmonitor.dburl import DatabaseURL, as_url
from dkmonitor.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# The newest migration in migrations/versions. Only this module trusts it, and
# only to skip a migration check before reading; tests/test_view_fast_path.py
# fails when it differs from alembic's head, so a new migration updates it.
HEAD_REVISION = "0009"

# Foreign keys on (cascades), WAL so views can read while a run writes: run on
# every SQLite connection that may write, the engine's and the plain one alike.
SQLITE_WRITE_PRAGMAS = (
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
)


class ReadConnection:
    """A DB-API connection and the backend it talks to, for read-only queries.

    Statements are written once with ``?`` placeholders and turned into
    psycopg2's ``%s`` here. Closing it closes (or, from an engine, returns
    to the pool) the connection underneath.
    """

    def __init__(self, connection: Any, backend: str) -> None:
        self.connection = connection
        self.backend = backend  # "sqlite" or "postgresql"

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement, as plain tuples."""
        sql = placeholders(sql, BACKENDS[self.backend])
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def time_param(self, moment: datetime) -> object:
        """A naive UTC time as a parameter compared with a stored time.

        SQLite holds the text SQLAlchemy wrote (``2024-03-01 02:00:00.000000``),
        compared as text; PostgreSQL gets an aware UTC value, so the comparison
        with its ``timestamp with time zone`` columns never depends on the
        session's time zone.
        """
        if self.backend == "sqlite":
            return naive_utc(moment).strftime("%Y-%m-%d %H:%M:%S.%f")
        return naive_utc(moment).replace(tzinfo=UTC)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> ReadConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def connect_current(url: str | DatabaseURL, *, readonly: bool = True) -> ReadConnection | None:
    """A read connection when the schema is at head; None when it needs the usual path.

    ``readonly=False`` gives a connection the runner may write through
    (dkmonitor.db.plainwrite), set up as the engine sets up its own.

    None also for anything this path does not handle (an in-memory or
    missing SQLite file, URL options for SQLite): the usual path handles them
    as it always did. A PostgreSQL server that cannot be reached raises
    DatabaseUnavailable with the same message as ``open_database``.
    """
    parsed = as_url(url)
    try:
        backend = backend_for(parsed).name
    except ValueError:
        return None
    if backend == "sqlite":
        connection = _sqlite(parsed, readonly)
    else:
        connection = _postgresql(parsed, readonly)
    if connection is None:
        return None
    if not _at_head(connection):
        connection.close()
        log.debug("%s is not at revision %s: the usual way", parsed, HEAD_REVISION)
        return None
    return connection


def _sqlite(parsed: DatabaseURL, readonly: bool = True) -> ReadConnection | None:
    import sqlite3

    path = parsed.sqlite_file()
    if parsed.query or path is None:
        return None
    if not os.path.isfile(path):
        return None  # the usual path creates it
    # mode=rw never creates the file; a file the user may only read opens read-only.
    uri = f"file:{quote(path)}?mode=rw"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        log.debug("cannot open %s directly (%s): opening it the usual way", path, exc)
        return None
    if not readonly:
        try:  # what dkmonitor.db.engine does on each of its connections
            for pragma in SQLITE_WRITE_PRAGMAS:
                connection.execute(pragma)
        except sqlite3.Error as exc:
            connection.close()
            log.debug("cannot set up %s directly (%s): opening it the usual way", path, exc)
            return None
    return ReadConnection(connection, "sqlite")


def _postgresql(parsed: DatabaseURL, readonly: bool = True) -> ReadConnection:
    psycopg2 = driver_module(BACKENDS["postgresql"])
    try:
        connection = psycopg2.connect(**dbapi_kwargs(parsed))
    except psycopg2.Error as exc:
        if not is_unavailable(exc):
            raise
        raise DatabaseUnavailable(unavailable_message(parsed, exc)) from None
    set_up_session(connection, BACKENDS["postgresql"])
    if readonly:
        connection.set_session(readonly=True)
    return ReadConnection(connection, "postgresql")


def _at_head(connection: ReadConnection) -> bool:
    """True when ``alembic_version`` holds exactly the head revision.

    Any driver error (not a database file, no permission) answers False: the
    usual path then reports it as it always has.
    """
    backend = BACKENDS[connection.backend]
    errors = driver_module(backend).Error
    try:
        if connection.rows(backend.has_version_table)[0][0] == 0:
            return False
        versions = [row[0] for row in connection.rows("SELECT version_num FROM alembic_version")]
    except errors as exc:
        log.debug("cannot read the schema revision directly: %s", exc)
        return False
    return versions == [HEAD_REVISION]

