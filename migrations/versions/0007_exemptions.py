"""Exemptions: users or paths under a task's target that cleaning never touches.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exemptions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_name", sa.Text(), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_exemptions_task", "exemptions", ["task_name", "expires_at"])


def downgrade() -> None:
    op.drop_table("exemptions")
