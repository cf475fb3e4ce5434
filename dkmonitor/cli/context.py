"""What every command needs: settings loaded lazily, a database opened once.

SQLAlchemy is imported only when a command opens the database through it:
``view`` usually reads through ``reader()`` without it, and importing it
would cost that process a quarter of a second.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from dkmonitor.config import Settings, load_settings

if TYPE_CHECKING:
    from dkmonitor.db.engine import Database
    from dkmonitor.db.readonly import ReadConnection
    from dkmonitor.scan.mpi import ScanPool


class AppContext:
    """What every command gets: the options of ``dkmonitor`` itself, the settings
    and the database, each loaded on first use. (A plain class: defining a
    dataclass costs more than this whole module at every start.)"""

    def __init__(self, config_path: str | None, verbosity: int,
                 scan_pool: ScanPool | None = None) -> None:
        self.config_path = config_path
        self.verbosity = verbosity  # -1 quiet, 0 normal, 1 verbose
        self.scan_pool = scan_pool  # rank 0 of an MPI job: the other ranks, for scans
        self._settings: Settings | None = None
        self._database: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            from dkmonitor.cli.logsetup import configure_logging

            configure_logging(self._settings, self.verbosity)
            for warning in self._settings.warnings:
                click.echo(warning, err=True)
        return self._settings

    def database(self, migrate: bool = True) -> Database:
        """The history database, migrated to head on first use."""
        if self._database is None:
            from dkmonitor.db.engine import open_database

            self._database = open_database(self.settings.database.url, migrate=migrate)
        return self._database

    @contextmanager
    def reader(self) -> Iterator[ReadConnection]:
        """A read-only DB-API connection for the view queries.

        Straight from the driver when the schema is current; otherwise (a new
        or older database) through ``database()``, which creates or migrates.
        """
        from dkmonitor.db.readonly import connect_current

        connection = connect_current(self.settings.database.url)
        if connection is None:
            connection = self.database().reader()
        with connection:
            yield connection

    def close(self) -> None:
        if self._database is not None:
            self._database.dispose()
            self._database = None

    @property
    def interactive(self) -> bool:
        """A person is watching (stdout is a terminal) — cron is not."""
        return sys.stdout.isatty()


pass_app = click.make_pass_decorator(AppContext)
