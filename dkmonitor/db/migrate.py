"""Schema migrations, run by dkmonitor itself on an open connection.

The alembic scripts ship inside the package (``dkmonitor.migrations``) so a
plain ``pip install .`` can migrate; they are found with importlib.resources.
On PostgreSQL an advisory lock serialises upgrades, so several hosts starting
at once after an upgrade of dkmonitor do not race to create the same tables.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

# Any constant works; it only has to be the same for every dkmonitor process.
_UPGRADE_LOCK_KEY = 0x646B6D6F6E  # "dkmon"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("dkmonitor.migrations")))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "dkmonitor ships at least one migration"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def pending_revisions(connection: Connection) -> list[str]:
    """Revisions between the database's current one and head, oldest first."""
    script = ScriptDirectory.from_config(_config())
    current = current_revision(connection)
    pending = [rev.revision for rev in script.iterate_revisions("heads", current)]
    return list(reversed(pending))


def upgrade_to_head(engine: Engine) -> list[str]:
    """Apply every pending migration; returns the revisions applied."""
    head = head_revision()
    with engine.connect() as probe:
        if current_revision(probe) == head:
            return []
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
            connection.commit()
        try:
            applied = pending_revisions(connection)
            if applied:
                command.upgrade(_config(connection), "head")
                connection.commit()
            return applied
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _UPGRADE_LOCK_KEY}
                )
                connection.commit()
