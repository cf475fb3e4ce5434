"""Schema migrations, run by dkmonitor itself on an open connection.

The alembic scripts ship inside the package (``dkmonitor.migrations``) so a
plain ``pip install .`` can migrate; they are found with importlib.resources.
A backend's upgrade lock (on PostgreSQL an advisory lock; see
dkmonitor.db.backends) serialises upgrades, so several hosts starting at once
after an upgrade of dkmonitor do not race to create the same tables.

Every command opens the database through ``upgrade_to_head``, and nearly
always the schema is already current. Importing alembic (which drags in mako
and pygments) and loading its script directory cost about 0.24 s of CPU, a
third of a `dkmonitor view` process on the benchmark machine, so the common case is answered without
alembic: the head is read from the shipped version files' text and the
current revision from the ``alembic_version`` table. Anything unusual (no
version table, several heads, a file not written the usual way) goes the
full alembic way.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from dkmonitor.db.backends import BACKENDS

if TYPE_CHECKING:
    from alembic.config import Config

# `revision = "0004"`, also with a type annotation as newer alembic templates write it
_REVISION = re.compile(r"^revision(?:\s*:[^=\n]+)?\s*=\s*[\"'](\w+)[\"']\s*$", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:\s*:[^=\n]+)?\s*=\s*(?:None|[\"'](\w+)[\"'])\s*$", re.MULTILINE
)


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("dkmonitor.migrations")))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "dkmonitor ships at least one migration"
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def pending_revisions(connection: Connection) -> list[str]:
    """Revisions between the database's current one and head, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    current = current_revision(connection)
    pending = [rev.revision for rev in script.iterate_revisions("heads", current)]
    return list(reversed(pending))


def _shipped_head() -> str | None:
    """The head revision, read from the version files without alembic; None if unsure."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in files("dkmonitor.migrations").joinpath("versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("_"):
            continue
        source = script.read_text(encoding="utf-8")
        revision = _REVISION.findall(source)
        down = _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        if down[0]:
            parents.add(down[0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _is_current(engine: Engine) -> bool:
    """True when the database is known to be at head (never wrongly: False means look closer)."""
    head = _shipped_head()
    if head is None:
        return False
    with engine.connect() as probe:
        if not inspect(probe).has_table("alembic_version"):
            return False
        versions = probe.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions == [head]


def upgrade_to_head(engine: Engine) -> list[str]:
    """Apply every pending migration; returns the revisions applied."""
    if _is_current(engine):
        return []
    from alembic import command

    head = head_revision()
    with engine.connect() as probe:
        if current_revision(probe) == head:
            return []
    lock = BACKENDS[engine.dialect.name].upgrade_lock
    with engine.connect() as connection:
        if lock is not None:
            connection.execute(text(lock[0]))
            connection.commit()
        try:
            applied = pending_revisions(connection)
            if applied:
                command.upgrade(_config(connection), "head")
                connection.commit()
            return applied
        except BaseException:
            # Nothing of a failed upgrade is kept: the unlock below commits.
            connection.rollback()
            raise
        finally:
            if lock is not None:
                connection.execute(text(lock[1]))
                connection.commit()
            if engine.dialect.name == "sqlite":
                restore_foreign_keys(connection)


def restore_foreign_keys(connection: Connection) -> None:
    """SQLite: foreign keys on again (migrations/env.py turned them off) before the pool
    hands the connection out again."""
    connection.rollback()  # the pragma is ignored inside a transaction
    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    connection.commit()
