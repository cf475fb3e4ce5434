"""Opening the history database: engine, sessions, schema kept at head.

``open_database`` is what every command uses. It brings the schema to the
newest migration (so an upgraded dkmonitor never runs against an old schema)
and hands back a ``Database`` whose ``session()`` commits on success and
rolls back on any error: a run's rows land all together or not at all.
A new SQLite file is created 0600 before SQLite opens it (its -wal and -shm
files take the same mode), in a directory created 0700 when it is missing —
the settings loader has already refused a URL naming a missing directory
other than the state directory. What differs per backend is read from
``dkmonitor.db.backends``. A run opens it with ``open_current`` instead:
the same, but when the schema is already at head it starts with a plain
DB-API connection and builds the engine only if something needs it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dkmonitor.db.backends import (
    backend_for,
    is_database_error,
    is_unavailable,
    set_up_session,
    unavailable_message,
)
from dkmonitor.db.readonly import SQLITE_WRITE_PRAGMAS, ReadConnection, connect_current
from dkmonitor.dburl import DatabaseURL, as_url
from dkmonitor.errors import DatabaseUnavailable
from dkmonitor.safefs import PRIVATE_FILE, make_private_dir

# SQLAlchemy is imported where it is used, never at import time: a quick run
# against a database already at head stores its row through ``plain`` (a
# DB-API connection, dkmonitor.db.plainwrite) and never needs it; importing
# it alone cost a third of a second of each such process.
if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL
    from sqlalchemy.orm import Session, sessionmaker


class Database:
    """The history database: a SQLAlchemy engine, and maybe a plain DB-API connection.

    ``open_database`` gives one with its engine built (and the schema brought
    to head). ``open_current`` gives one whose schema is known to be at head
    and whose engine is built only when something first asks for it; its
    ``plain`` connection is what the runner writes a scan record and reads
    the tasks through meanwhile.
    """

    def __init__(
        self, parsed_url: DatabaseURL, engine: Engine | None = None,
        plain: ReadConnection | None = None,
    ) -> None:
        self.parsed_url = parsed_url
        self.plain = plain
        self._engine = engine
        self._sessions: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        """The engine, built on first use (no migration: the schema was at head)."""
        if self._engine is None:
            self._engine = make_engine(self.parsed_url)
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            from sqlalchemy.orm import sessionmaker

            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    @property
    def url(self) -> str:
        """The URL for messages: password masked."""
        return str(self.parsed_url)

    @property
    def is_sqlite(self) -> bool:
        return backend_for(self.parsed_url).name == "sqlite"

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
        if self.plain is not None:
            self.plain.close()
            self.plain = None
        if self._engine is not None:
            self._engine.dispose()


def driver_url(url: str | DatabaseURL) -> URL:
    """SQLAlchemy's URL, naming the driver we depend on (psycopg2 for postgresql)."""
    from sqlalchemy.engine import URL

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
    from sqlalchemy import create_engine, event

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
    for pragma in SQLITE_WRITE_PRAGMAS:
        cursor.execute(pragma)
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
    except Exception as exc:
        engine.dispose()
        if not is_database_error(exc) or not is_unavailable(exc):
            raise
        raise DatabaseUnavailable(unavailable_message(parsed, exc)) from None
    return Database(parsed, engine)


def open_current(url: str | DatabaseURL) -> Database:
    """``open_database``, without SQLAlchemy when the schema is already at head.

    At head (nearly always) the Database holds a plain DB-API connection
    opened for writing and builds its engine only if asked; otherwise this is
    ``open_database`` (create, migrate). Raises DatabaseUnavailable alike.
    """
    parsed = as_url(url)
    path = parsed.sqlite_file()
    if path is not None:
        try:  # as make_engine does: a missing file created 0600, an old one tightened
            _create_sqlite_file(path)
        except OSError as exc:
            raise DatabaseUnavailable(f"database {parsed}: {exc.strerror or exc}") from None
    plain = connect_current(parsed, readonly=False)
    if plain is None:
        return open_database(url)
    return Database(parsed, plain=plain)
