"""Write-ahead action journal: intents before acts, reconciled after a crash.

A move, delete or restore is committed as an ``outcome = 'pending'`` row
before the file is touched and completed afterwards; these columns hold what
the next run needs to find out where a file is after a crash: the run that
wrote the row, the temporary copy's path, the file's device and inode as
checked, the move a restore undoes, and when the row was completed. Rows
written before this revision are complete already (finished_at stays NULL
for them; outcome is what tells).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("run_id", sa.String(36)),
    ("temp_path", sa.LargeBinary()),
    ("file_dev", sa.BigInteger()),
    ("file_ino", sa.BigInteger()),
    ("restores_id", sa.Integer()),
    ("finished_at", sa.DateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_actions_pending", "actions", ["outcome", "hostname", "task_name"])


def downgrade() -> None:
    op.drop_index("ix_actions_pending", table_name="actions")
    with op.batch_alter_table("actions") as batch:
        for name, _kind in reversed(_COLUMNS):
            batch.drop_column(name)
