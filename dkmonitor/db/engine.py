"""Opening the history database: engine, sessions, schema kept at head.

``open_database`` is what every command uses. It creates the SQLite file's
directory, brings the schema to the newest migration (so an upgraded
dkmonitor never runs against an old schema) and hands back a ``Database``
whose ``session()`` commits on success and rolls back on any error: a run's
rows land all together or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dkmonitor.config import mask_password
from dkmonitor.db.readonly import ReadConnection
from dkmonitor.errors import DatabaseUnavailable


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def url(self) -> str:
        return mask_password(self.engine.url.render_as_string(hide_password=False))

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


def driver_url(url: str) -> URL:
    """``postgresql://`` means psycopg2 (our dependency) whatever SQLAlchemy's default."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def make_engine(url: str) -> Engine:
    parsed = driver_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """Foreign keys on (cascades), WAL so views can read while a run writes."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect, and unless told otherwise bring the schema to head.

    Raises DatabaseUnavailable when the server cannot be reached, so the
    runner can spool instead of losing the scan.
    """
    from dkmonitor.db.migrate import upgrade_to_head

    engine = make_engine(url)
    try:
        if migrate:
            upgrade_to_head(engine)
        else:
            with engine.connect():
                pass
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"database {mask_password(url)}: {reason}") from None
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
