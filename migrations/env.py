"""Alembic environment for dkmonitor.

dkmonitor runs migrations itself (``dkmonitor.db.migrate``), handing over an
open connection through ``config.attributes``: passing the URL through the
ini machinery would break on a ``%`` in a password. SQLite needs batch mode
for ALTER TABLE, and foreign keys off while it runs: batch mode rebuilds a
table by copying it and dropping the old one, and dropping ``scans`` with
foreign keys on would first delete (ON DELETE CASCADE) every user row. The
pragma only takes effect outside a transaction, so it is set here, before
the first migration; ``dkmonitor.db.migrate`` turns it back on after the
commit.
"""

from alembic import context

from dkmonitor.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "dkmonitor migrations are run by `dkmonitor database upgrade`, not by the alembic CLI"
    )

if connection.dialect.name == "sqlite":
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
