"""Schema hardening: instants on PostgreSQL, one user row per scan, indexed keys, CHECKs.

- On PostgreSQL every ``timestamp`` column of dkmonitor's tables becomes
  ``timestamp with time zone``. The stored values were naive UTC, so they are
  read as UTC (the session's time zone is set to UTC for the conversion,
  whatever the server's default; PostgreSQL 12 and newer then change the type
  without rewriting the table). Columns are found in the catalogue rather
  than listed, so a timestamp column added by an earlier revision is
  converted too. On SQLite times stay naive UTC text: nothing to do.
- ``user_stats`` gets UNIQUE (scan_id, uid), as a unique index (SQLite adds
  it without rebuilding its largest table). It serves every lookup by
  scan_id too, so the index on scan_id alone goes: the largest table keeps
  one index on scan_id, not two. Duplicates stop the upgrade with a message
  saying how to find them: which of two rows is right is not for a
  migration to guess.
- ``notifications.scan_id`` and ``actions.scan_id`` get indexes: deleting old
  scans sets them NULL, which without an index reads both tables whole.
- CHECK constraints keep the enumerations (``dkmonitor.enums.CHECKS``) to
  their words. A stored value outside its set stops the upgrade, naming it.
  On SQLite the tables concerned are rebuilt (alembic batch mode) with
  foreign keys off (migrations/env.py), or dropping ``scans`` would cascade
  to every user row.

The checks run before anything changes, and the whole upgrade is one
transaction on PostgreSQL. Touches only the tables above: columns another
revision adds to them are carried over untouched.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from dkmonitor.enums import CHECKS, one_of
from dkmonitor.errors import DkmError

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Every table of dkmonitor's that holds times.
TIMED_TABLES = ("tasks", "scans", "notifications", "actions", "exemptions")
UNIQUE_USER = "uq_user_stats_scan_uid"
SCAN_ONLY = "ix_user_stats_scan_id"  # made redundant by UNIQUE_USER
SCAN_ID_INDEXES = (("ix_notifications_scan_id", "notifications"), ("ix_actions_scan_id", "actions"))


def _refuse_bad_rows() -> None:
    """DkmError naming the first stored row the new constraints would refuse, if any."""
    bind = op.get_bind()
    duplicate = bind.execute(
        sa.text(
            "SELECT scan_id, uid, count(*) FROM user_stats GROUP BY scan_id, uid "
            "HAVING count(*) > 1 ORDER BY scan_id, uid LIMIT 1"
        )
    ).first()
    if duplicate is not None:
        scan_id, uid, count = duplicate
        raise DkmError(
            f"database upgrade 0009: user_stats holds {count} rows for scan {scan_id} and "
            f"uid {uid} (and maybe more pairs): keep one row per (scan_id, uid) "
            "(SELECT scan_id, uid FROM user_stats GROUP BY scan_id, uid HAVING count(*) > 1 "
            "lists them), then run `dkmonitor database upgrade` again"
        )
    for _name, table, column, values in CHECKS:
        bad = bind.execute(
            sa.text(
                f"SELECT {column}, count(*) FROM {table} WHERE {column} IS NOT NULL "
                f"AND NOT ({one_of(column, values)}) GROUP BY {column} ORDER BY {column} LIMIT 1"
            )
        ).first()
        if bad is not None:
            raise DkmError(
                f"database upgrade 0009: {table}.{column} holds {bad[0]!r} in {bad[1]} row(s); "
                f"allowed: {', '.join(values)}. Correct or delete those rows, then run "
                "`dkmonitor database upgrade` again"
            )


def _timestamp_columns(data_type: str) -> dict[str, list[str]]:
    """PostgreSQL: the columns of TIMED_TABLES of ``data_type``, per table."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = :type "
            "AND table_name IN :tables ORDER BY table_name, ordinal_position"
        ).bindparams(sa.bindparam("tables", expanding=True)),
        {"type": data_type, "tables": list(TIMED_TABLES)},
    )
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


def _retype_times(from_type: str, to_type: str) -> None:
    """PostgreSQL: every ``from_type`` column becomes ``to_type``, read as UTC wall time."""
    op.execute("SET LOCAL TIME ZONE 'UTC'")
    for table, columns in _timestamp_columns(from_type).items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {to_type}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def _checks_by_table() -> dict[str, list[tuple[str, str]]]:
    by_table: dict[str, list[tuple[str, str]]] = {}
    for name, table, column, values in CHECKS:
        by_table.setdefault(table, []).append((name, one_of(column, values)))
    return by_table


def _require_foreign_keys_off() -> None:
    """SQLite: rebuilding ``scans`` with foreign keys on would delete every user row."""
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar() != 0:
        raise RuntimeError(
            "migration 0009 must run with SQLite foreign keys off (migrations/env.py "
            "turns them off before any statement): refusing to rebuild tables"
        )


def upgrade() -> None:
    _refuse_bad_rows()
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        _retype_times("timestamp without time zone", "timestamp with time zone")
    op.create_index(UNIQUE_USER, "user_stats", ["scan_id", "uid"], unique=True)
    existing = {
        table: {index["name"] for index in sa.inspect(op.get_bind()).get_indexes(table)}
        for table in ("user_stats", *(table for _name, table in SCAN_ID_INDEXES))
    }
    if SCAN_ONLY in existing["user_stats"]:
        op.drop_index(SCAN_ONLY, table_name="user_stats")
    for name, table in SCAN_ID_INDEXES:
        if name not in existing[table]:
            op.create_index(name, table, ["scan_id"])
    if sqlite:
        _require_foreign_keys_off()
    for table, checks in _checks_by_table().items():
        if sqlite:
            with op.batch_alter_table(table, recreate="always") as batch:
                for name, condition in checks:
                    batch.create_check_constraint(name, sa.text(condition))
        else:
            for name, condition in checks:
                op.create_check_constraint(name, table, sa.text(condition))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _require_foreign_keys_off()
    for table, checks in _checks_by_table().items():
        if sqlite:
            with op.batch_alter_table(table, recreate="always") as batch:
                for name, _condition in checks:
                    batch.drop_constraint(name, type_="check")
        else:
            for name, _condition in checks:
                op.drop_constraint(name, table, type_="check")
    for name, table in SCAN_ID_INDEXES:
        op.drop_index(name, table_name=table)
    op.create_index(SCAN_ONLY, "user_stats", ["scan_id"])
    op.drop_index(UNIQUE_USER, table_name="user_stats")
    if not sqlite:
        _retype_times("timestamp with time zone", "timestamp without time zone")
