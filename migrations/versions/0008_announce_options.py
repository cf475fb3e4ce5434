"""Announced purge: a task's notice period, final reminder, clean-always and emergency level.

``notice_days`` (0: no announcements, today's behaviour) and ``clean_always``
are NOT NULL with server defaults, so existing tasks upgrade in place and keep
behaving as before; ``final_notice_days`` (NULL: the default, 3 days or half
the notice period) and ``emergency_percent`` (NULL: none) may be empty.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("notice_days", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("final_notice_days", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("clean_always", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("emergency_percent", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("emergency_percent")
        batch.drop_column("clean_always")
        batch.drop_column("final_notice_days")
        batch.drop_column("notice_days")
