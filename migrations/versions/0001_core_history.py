"""Core history: tasks, scans and per-user stats.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("target_path", sa.Text(), nullable=False),
        sa.Column("relocation_path", sa.Text(), nullable=True),
        sa.Column("delete_old_files", sa.Boolean(), nullable=False),
        sa.Column("delete_when_full", sa.Boolean(), nullable=False),
        sa.Column("usage_warning_threshold", sa.Float(), nullable=False),
        sa.Column("usage_critical_threshold", sa.Float(), nullable=False),
        sa.Column("old_file_threshold", sa.Float(), nullable=False),
        sa.Column("email_usage_warnings", sa.Boolean(), nullable=False),
        sa.Column("email_data_alterations", sa.Boolean(), nullable=False),
        sa.Column("email_top_percent", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("age_basis", sa.String(16), nullable=False),
        sa.Column("purge_target_percent", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tasks_hostname", "tasks", ["hostname"])

    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, unique=True),
        sa.Column("task_name", sa.Text(), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("target_path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("disk_total", sa.BigInteger(), nullable=True),
        sa.Column("disk_used", sa.BigInteger(), nullable=True),
        sa.Column("disk_available", sa.BigInteger(), nullable=True),
        sa.Column("disk_use_percent", sa.Float(), nullable=True),
        sa.Column("files", sa.BigInteger(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("allocated_bytes", sa.BigInteger(), nullable=True),
        sa.Column("old_files", sa.BigInteger(), nullable=True),
        sa.Column("old_bytes", sa.BigInteger(), nullable=True),
        sa.Column("average_age_days", sa.Float(), nullable=True),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_scans_host_target_started", "scans", ["hostname", "target_path", "started_at"]
    )
    op.create_index("ix_scans_task_started", "scans", ["task_name", "started_at"])

    op.create_table(
        "user_stats",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "scan_id",
            sa.Integer(),
            sa.ForeignKey("scans.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("allocated_bytes", sa.BigInteger(), nullable=False),
        sa.Column("old_files", sa.BigInteger(), nullable=False),
        sa.Column("old_bytes", sa.BigInteger(), nullable=False),
        sa.Column("average_age_days", sa.Float(), nullable=False),
    )
    op.create_index("ix_user_stats_scan_id", "user_stats", ["scan_id"])
    op.create_index("ix_user_stats_username_scan", "user_stats", ["username", "scan_id"])


def downgrade() -> None:
    op.drop_table("user_stats")
    op.drop_table("scans")
    op.drop_table("tasks")
