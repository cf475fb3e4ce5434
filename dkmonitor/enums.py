"""The closed sets of words dkmonitor stores in its database, each declared once.

The code that writes a value imports it from here, the models turn each set
into a CHECK constraint, and migration 0009 creates those constraints from the
same tuples, so the database refuses a value the code could never have
written (a typo in hand-written SQL, a row from a newer or broken program).
Changing a set means a new migration that re-creates its constraint.

Imports nothing: the scanner, the journal and the models all read it, and
``dkmonitor view`` must stay light.
"""

from __future__ import annotations

# scans.kind: a quick disk-use reading, or a full walk of the target.
QUICK, FULL = "quick", "full"
SCAN_KINDS = (QUICK, FULL)

# scans.status: the run measured and stored its numbers, or failed before that.
OK, FAILED = "ok", "failed"
SCAN_STATUSES = (OK, FAILED)

# actions.action and actions.outcome: the cleaning journal (dkmonitor.clean.journal).
MOVE, DELETE, RESTORE = "move", "delete", "restore"
JOURNAL_ACTIONS = (MOVE, DELETE, RESTORE)
PENDING, DONE, SKIPPED, INTERRUPTED = "pending", "done", "skipped", "interrupted"
JOURNAL_OUTCOMES = (PENDING, DONE, SKIPPED, FAILED, INTERRUPTED)

# tasks.age_basis. The order is the compiled loop's basis code (_dirscan.c's
# enum, exported as _dirscan.BASES; tests/test_scan_compiled.py checks they match).
AGE_BASES = ("used", "atime", "mtime", "ctime")

# scan_histograms.kind and scan_top_directories.ranking (migration 0006).
HISTOGRAM_KINDS = ("size", "age")
TOP_RANKINGS = ("bytes", "old_bytes")

# (constraint name, table, column, values): what migration 0009 creates and the
# models declare. notifications.kind is left open: mail kinds are added with
# new kinds of mail, and a refused log row would hide a sent mail.
CHECKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("ck_tasks_age_basis", "tasks", "age_basis", AGE_BASES),
    ("ck_scans_kind", "scans", "kind", SCAN_KINDS),
    ("ck_scans_status", "scans", "status", SCAN_STATUSES),
    ("ck_actions_action", "actions", "action", JOURNAL_ACTIONS),
    ("ck_actions_outcome", "actions", "outcome", JOURNAL_OUTCOMES),
    ("ck_scan_histograms_kind", "scan_histograms", "kind", HISTOGRAM_KINDS),
    ("ck_scan_top_directories_ranking", "scan_top_directories", "ranking", TOP_RANKINGS),
)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """The SQL condition ``column IN ('a', 'b')`` (the values are our own words, no quotes)."""
    assert all("'" not in value for value in values)
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def check_for(table: str, column: str) -> tuple[str, str]:
    """(constraint name, SQL condition) of ``table.column``'s CHECK."""
    for name, in_table, in_column, values in CHECKS:
        if (in_table, in_column) == (table, column):
            return name, one_of(column, values)
    raise KeyError(f"{table}.{column} has no enumeration")
