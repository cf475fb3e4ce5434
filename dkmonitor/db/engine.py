"""Opening the history database: engine, sessions, schema kept at head.

``open_database`` is what every command uses. It brings the schema to the
newest migration (so an upgraded dkmonitor never runs against an old schema)
and hands back a ``Database`` whose ``session()`` commits on success and
rolls back on any error: a run's rows land all together or not at all.
A new SQLite file is created 0600 before SQLite opens it (its -wal and -shm
files take the same mode), in a directory created 0700 when it is missing —
the settings loader has already refused a URL naming a missing directory
other than the state directory. What differs per backend is read from
``dkmonitor.db.backends``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dkmonitor.db.backends import (
    backend_for,
    is_unavailable,
    set_up_session,
    unavailable_message,
)
from dkmonitor.db.readonly import ReadConnection
from dkmonitor.dburl import DatabaseURL, as_url
from dkmonitor.errors import DatabaseUnavailable
from dkmonitor.safefs import PRIVATE_FILE, make_private_dir


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    parsed_url: DatabaseURL

    @property
    def url(self) -> str:
        """The URL for messages: password masked."""
        return str(self.parsed_url)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def reader(self) -> ReadConnection:
        """A pooled DB-API connection for the plain-SQL view queries (dkmonitor.db.queries)."""
        return ReadConnection(self.engine.raw_connection(), self.engine.dialect.name)

    def dispose(self) -> None:
        self.engine.dispose()


def driver_url(url: str | DatabaseURL) -> URL:
    """SQLAlchemy's URL, naming the driver we depend on (psycopg2 for postgresql)."""
    parsed = as_url(url)
    query: dict[str, list[str]] = {}
    for key, value in parsed.query:
        query.setdefault(key, []).append(value)
    return URL.create(  # from the parts already parsed: no second parse of the text
        backend_for(parsed).sqlalchemy_driver,
        username=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query={key: values[0] if len(values) == 1 else tuple(values)
               for key, values in query.items()},
    )


def _create_sqlite_file(path: str) -> None:
    """A missing database file is created 0600 (SQLite would use 0644 under umask 022).

    As root, an existing file of root's (and its -wal, -shm) left readable by
    others by an older dkmonitor is brought to 0600: it names every user's paths.
    """
    make_private_dir(os.path.dirname(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.close(os.open(path, flags, PRIVATE_FILE))
    except FileExistsError:
        if os.geteuid() == 0:
            for name in (path, f"{path}-wal", f"{path}-shm"):
                _tighten(name)


def _tighten(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_uid == 0 and info.st_mode & 0o077:
        os.chmod(path, PRIVATE_FILE)  # a regular file of root's, in a directory we checked


def make_engine(url: str | DatabaseURL) -> Engine:
    parsed = as_url(url)
    backend = backend_for(parsed)
    path = parsed.sqlite_file()
    if path is not None:
        _create_sqlite_file(path)
    engine = create_engine(driver_url(parsed), **backend.engine_options)
    if backend.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if backend.session_setup:
        event.listen(engine, "connect", lambda dbapi, _record: set_up_session(dbapi, backend))
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """Foreign keys on (cascades), WAL so views can read while a run writes."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_database(url: str | DatabaseURL, *, migrate: bool = True) -> Database:
    """Connect, and unless told otherwise bring the schema to head.

    Raises DatabaseUnavailable when the server cannot be reached or the
    SQLite file cannot be used (locked, corrupted), so the runner can spool
    instead of losing the scan.
    """
    from dkmonitor.db.migrate import upgrade_to_head

    parsed = as_url(url)
    try:
        engine = make_engine(parsed)
    except OSError as exc:
        raise DatabaseUnavailable(f"database {parsed}: {exc.strerror or exc}") from None
    try:
        if migrate:
            upgrade_to_head(engine)
        else:
            with engine.connect():
                pass
    except SQLAlchemyError as exc:
        engine.dispose()
        if not is_unavailable(exc):
            raise
        raise DatabaseUnavailable(unavailable_message(parsed, exc)) from None
    sessions = sessionmaker(engine, expire_on_commit=False)
    return Database(engine=engine, sessions=sessions, parsed_url=parsed)
