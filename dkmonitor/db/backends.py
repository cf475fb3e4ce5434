"""What differs between the database backends, in one table.

dkmonitor speaks to SQLite (embedded, the default) and PostgreSQL (shared by
many hosts). Everything that depends on which one — the DB-API driver, the
arguments it connects with, its placeholder style, how the database's size is
measured, how concurrent schema upgrades are serialised, and which driver
errors mean "the database cannot be used right now" (so a run spools its scan
instead of losing it) — is declared here, once, and read by ``engine``,
``readonly``, ``maintenance``, ``migrate`` and the CLI's error mapping. A third
backend is one more ``Backend`` row plus its driver.

This module never imports SQLAlchemy or a driver at import time: ``view``
reads through the bare driver and the CLI asks only drivers already loaded.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from dkmonitor.dburl import DatabaseURL
from dkmonitor.records import FrozenRecord

# Seconds. A run waits this long for a SQLite writer; a PostgreSQL server that
# does not answer within the connect timeout counts as unreachable.
SQLITE_BUSY_TIMEOUT = 60
PG_CONNECT_TIMEOUT = 10

# Any constant works; it only has to be the same for every dkmonitor process.
UPGRADE_LOCK_KEY = 0x646B6D6F6E  # "dkmon"


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class Backend(FrozenRecord):
    """One database backend's particulars."""

    name: str  # the URL's scheme before any "+driver"
    sqlalchemy_driver: str  # the drivername SQLAlchemy is given
    dbapi_module: str  # the DB-API module, imported lazily
    engine_options: Mapping[str, Any]  # create_engine keyword arguments
    paramstyle: str  # "qmark" (?) or "format" (%s)
    has_version_table: str  # SQL: count of alembic_version tables (0 or 1)
    size_query: str | None  # SQL giving the size in bytes; None: sum the files
    upgrade_lock: tuple[str, str] | None  # SQL taking / releasing the upgrade lock
    # DB-API error classes (names in dbapi_module) meaning "unusable now": spool.
    unavailable: tuple[str, ...] = ()
    # ... and classes that mean it only when raised exactly (not their subclasses).
    unavailable_exact: tuple[str, ...] = ()
    error_base: str = "Error"  # the DB-API base error class
    url_has_host: bool = True  # False: a host in the URL is a mistake (sqlite://tmp/x.db)
    # SQL run (and committed) on every new connection, SQLAlchemy's and the view's alike.
    session_setup: tuple[str, ...] = ()


SQLITE = Backend(
    name="sqlite",
    sqlalchemy_driver="sqlite+pysqlite",
    dbapi_module="sqlite3",
    engine_options=MappingProxyType({"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}),
    paramstyle="qmark",
    has_version_table="SELECT count(*) FROM sqlite_master "
    "WHERE type = 'table' AND name = 'alembic_version'",
    size_query=None,
    upgrade_lock=None,  # SQLite's own write lock serialises the migration
    # "unable to open database file", "database is locked"; and a file that is
    # not (or no longer) a database: "file is not a database", "malformed".
    unavailable=("OperationalError",),
    unavailable_exact=("DatabaseError",),
    url_has_host=False,
)

POSTGRESQL = Backend(
    name="postgresql",
    sqlalchemy_driver="postgresql+psycopg2",
    dbapi_module="psycopg2",
    engine_options=MappingProxyType(
        # utf8 whatever the server's encoding: a database made by an initdb without
        # a locale is SQL_ASCII, and psycopg2 would then refuse a user named Jürgen
        {"pool_pre_ping": True,
         "connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT, "client_encoding": "utf8"}}
    ),
    paramstyle="format",
    has_version_table="SELECT count(to_regclass('alembic_version'))",
    size_query="SELECT pg_database_size(current_database())",
    upgrade_lock=(
        f"SELECT pg_advisory_lock({UPGRADE_LOCK_KEY})",
        f"SELECT pg_advisory_unlock({UPGRADE_LOCK_KEY})",
    ),
    unavailable=("OperationalError", "InterfaceError"),
    # Times are timestamptz (migration 0009): in UTC their text form, date_trunc and
    # a naive value compared with them all mean what the stored naive UTC meant.
    session_setup=("SET TIME ZONE 'UTC'",),
)

BACKENDS: Mapping[str, Backend] = MappingProxyType({b.name: b for b in (SQLITE, POSTGRESQL)})

# The drivernames a settings file may use.
SUPPORTED_DRIVERS = tuple(name for b in BACKENDS.values() for name in (b.name, b.sqlalchemy_driver))


def backend_for(url: DatabaseURL) -> Backend:
    """The backend of ``url``; ValueError naming the supported ones otherwise."""
    backend = BACKENDS.get(url.backend)
    if backend is None or url.drivername not in (backend.name, backend.sqlalchemy_driver):
        raise ValueError(f"unsupported database {url.drivername!r}; use sqlite or postgresql")
    return backend


def driver_module(backend: Backend) -> Any:
    return importlib.import_module(backend.dbapi_module)


def dbapi_kwargs(url: DatabaseURL) -> dict[str, Any]:
    """psycopg2.connect keywords, as SQLAlchemy's psycopg2 dialect passes them.

    The URL's parts, its query as further keywords, and the engine's
    connect_args (connect_timeout) last.
    """
    names = {"host": "host", "port": "port", "username": "user", "password": "password"}
    kwargs: dict[str, Any] = {
        keyword: getattr(url, part) for part, keyword in names.items() if getattr(url, part)
    }
    if url.database:
        kwargs["dbname"] = url.database
    kwargs.update(url.query)
    kwargs.update(POSTGRESQL.engine_options["connect_args"])
    return kwargs


def set_up_session(dbapi_connection: Any, backend: Backend) -> None:
    """Run the backend's ``session_setup`` on a new DB-API connection, and commit it."""
    if not backend.session_setup:
        return
    cursor = dbapi_connection.cursor()
    try:
        for sql in backend.session_setup:
            cursor.execute(sql)
    finally:
        cursor.close()
    dbapi_connection.commit()  # a SET rolled back with its transaction would not last


def placeholders(sql: str, backend: Backend) -> str:
    """``sql`` written with ``?`` placeholders, in the backend's paramstyle."""
    return sql.replace("?", "%s") if backend.paramstyle == "format" else sql


def _loaded_class(backend: Backend, name: str) -> type[BaseException] | None:
    """A driver's error class, only when the driver is already imported."""
    module = sys.modules.get(backend.dbapi_module)
    found = getattr(module, name, None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _driver_error(exc: BaseException) -> BaseException:
    """The DB-API error underneath a SQLAlchemy one (``.orig``), else ``exc``."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (SQLAlchemy's or a driver's) means the database cannot be used now.

    A server that cannot be reached, a SQLite file that cannot be opened, is
    locked, or is corrupted: the run spools its scan rather than losing it.
    Constraint violations and programming errors are not that.
    """
    error = _driver_error(exc)
    for backend in BACKENDS.values():
        for name in backend.unavailable:
            cls = _loaded_class(backend, name)
            if cls is not None and isinstance(error, cls):
                return True
        for name in backend.unavailable_exact:
            cls = _loaded_class(backend, name)
            if cls is not None and type(error) is cls:
                return True
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and error is exc:  # no driver error underneath
        return isinstance(exc, sqlalchemy_exc.OperationalError)
    return False


def is_database_error(exc: BaseException) -> bool:
    """True for any error from SQLAlchemy or a backend's driver (loaded ones only)."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        return True
    for backend in BACKENDS.values():
        cls = _loaded_class(backend, backend.error_base)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def error_line(exc: BaseException, url: DatabaseURL | None = None) -> str:
    """The first line of a database error's message, any password in it masked."""
    text = str(_driver_error(exc)).strip()
    line = (text.splitlines() or [type(exc).__name__])[0]
    return url.scrub(line) if url is not None else line


def unavailable_message(url: DatabaseURL, exc: BaseException) -> str:
    """The one line said when the database cannot be used (never the password)."""
    return f"database {url}: {error_line(exc, url)}"
