"""The scan's shape: inodes and directories per user, size/age histograms, top directories.

Per user (and for the whole target) a scan now records ``inodes`` (every
entry owned: files, directories, symlinks, others) and ``directories``.
Rows stored before this revision were never counted: they read 0 per user
(NOT NULL with a server default, so existing rows upgrade in place) and
NULL for the target, like the other totals of a quick scan.

``scan_histograms`` holds the per-target size and age histograms (files and
bytes per bucket, a bucket named by its lower bound: bytes for ``size``,
days for ``age``); ``scan_top_directories`` the top directories of a scan by
bytes and by old bytes (whole-subtree totals). Both go with their scan.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("inodes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("directories", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("user_stats") as batch:
        batch.add_column(
            sa.Column("inodes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("directories", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "scan_histograms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "scan_id", sa.Integer(), sa.ForeignKey("scans.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("lower_bound", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_scan_histograms_scan_id", "scan_histograms", ["scan_id"])
    op.create_table(
        "scan_top_directories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "scan_id", sa.Integer(), sa.ForeignKey("scans.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("ranking", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("old_bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_scan_top_directories_scan_id", "scan_top_directories", ["scan_id"])


def downgrade() -> None:
    op.drop_index("ix_scan_top_directories_scan_id", table_name="scan_top_directories")
    op.drop_table("scan_top_directories")
    op.drop_index("ix_scan_histograms_scan_id", table_name="scan_histograms")
    op.drop_table("scan_histograms")
    with op.batch_alter_table("user_stats") as batch:
        batch.drop_column("directories")
        batch.drop_column("inodes")
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("directories")
        batch.drop_column("inodes")
