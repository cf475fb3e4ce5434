"""Alembic environment for dkmonitor.

dkmonitor runs migrations itself (``dkmonitor.db.migrate``), handing over an
open connection through ``config.attributes``: passing the URL through the
ini machinery would break on a ``%`` in a password. SQLite needs batch mode
for ALTER TABLE.
"""

from alembic import context

from dkmonitor.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "dkmonitor migrations are run by `dkmonitor database upgrade`, not by the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
