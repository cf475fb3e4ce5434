"""What every command needs: settings loaded lazily, a database opened once."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import click

from dkmonitor.config import Settings, load_settings
from dkmonitor.db.engine import Database, open_database


@dataclass
class AppContext:
    config_path: str | None
    verbosity: int  # -1 quiet, 0 normal, 1 verbose
    _settings: Settings | None = None
    _database: Database | None = None
    _shown_warnings: bool = field(default=False)

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
            self._database = open_database(self.settings.database.url, migrate=migrate)
        return self._database

    def close(self) -> None:
        if self._database is not None:
            self._database.dispose()
            self._database = None

    @property
    def interactive(self) -> bool:
        """A person is watching (stdout is a terminal) — cron is not."""
        return sys.stdout.isatty()


pass_app = click.make_pass_decorator(AppContext)
