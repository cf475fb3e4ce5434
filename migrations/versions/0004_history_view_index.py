"""History views: an index on the full scans' keys, in the order views rank them.

`dkmonitor view` ranks the good full scans of each host/target by start time.
The scans table holds about 23 quick scans for every full one (hourly quick,
nightly full), and the older indexes lead with hostname, so without this one
a view reads every scan of the year to find the few full ones. With kind and
status leading, the ranking reads only the full scans' index entries, in
partition order.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_scans_full_place_started",
        "scans",
        ["kind", "status", "hostname", "target_path", "started_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_scans_full_place_started", table_name="scans")
