"""`dkmonitor database ...`: inspect and maintain the history database."""

from __future__ import annotations

import click

from dkmonitor.cli.context import AppContext, pass_app
from dkmonitor.db import spool
from dkmonitor.db.migrate import head_revision


@click.group()
def database() -> None:
    """Inspect and maintain the history database."""


@database.command("upgrade")
@pass_app
def upgrade(app: AppContext) -> None:
    """Create the schema, or bring it to the newest version."""
    db = app.database()
    click.echo(f"{db.url}: schema at revision {head_revision()}")


@database.command("flush-spool")
@pass_app
def flush_spool(app: AppContext) -> None:
    """Store the runs spooled while the database was unreachable."""
    count = spool.replay(app.database(), app.settings.state_dir)
    click.echo(f"stored {count} spooled run(s)")
