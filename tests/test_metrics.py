"""The metrics' declaration (dkmonitor.metrics) and every shape that copies it agree.

A new metric is a field of ``Totals`` plus a column on each table, a field on
``UserUsageRow`` and a migration: these tests name whichever was forgotten.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import BigInteger, Float

from dkmonitor.db.models import Scan, UserStat
from dkmonitor.metrics import METRICS, NAMES, VIEW_KEYS, Metric, share_percent
from dkmonitor.scan.stats import Usage
from dkmonitor.taskrun import UserUsageRow

# DESIGN.md, "Details the tests rely on": the keys of view --format json, in order.
DESIGN_KEYS_FIRST_ROUND = (
    "task", "hostname", "target_path", "username", "uid", "scanned_at", "files", "bytes",
    "allocated_bytes", "old_files", "old_bytes", "average_age_days", "disk_use_percent", "errors",
)


def test_view_keys_start_with_the_documented_first_round_keys():
    assert VIEW_KEYS[: len(DESIGN_KEYS_FIRST_ROUND)] == DESIGN_KEYS_FIRST_ROUND
    assert set(NAMES) <= set(VIEW_KEYS)
    assert len(set(VIEW_KEYS)) == len(VIEW_KEYS)


@pytest.mark.parametrize("table", [Scan.__table__, UserStat.__table__], ids=lambda t: t.name)
@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_each_metric_is_a_stored_column_of_its_type(table, metric: Metric):
    assert metric.name in table.c, f"{table.name} has no column {metric.name} (add it + migration)"
    expected = Float if metric.kind is float else BigInteger
    assert isinstance(table.c[metric.name].type, expected)


def test_user_row_has_every_metric_in_declaration_order():
    names = [f.name for f in dataclasses.fields(UserUsageRow)]
    assert names[:2] == ["uid", "username"]
    assert tuple(names[2:]) == NAMES


def test_user_row_copies_every_metric_from_the_scanners_usage():
    usage = Usage()
    usage.add_file(size=1000, allocated=4096, age=86400.0 * 3, old=True)
    usage.add_file(size=10, allocated=0, age=86400.0, old=False)
    row = UserUsageRow.from_usage(7, "ann", usage)
    assert (row.files, row.bytes, row.allocated_bytes) == (2, 1010, 4096)
    assert (row.old_files, row.old_bytes, row.average_age_days) == (1, 1000, 2.0)


def test_share_is_allocated_bytes_over_the_file_system():
    # a 3 TiB sparse file allocates nothing: no share, whatever its apparent size
    sparse = UserUsageRow(1, "a", 1, 3 * 2**40, 0, 0, 0, 0.0)
    assert sparse.share_percent(250 * 2**30) == 0.0
    assert share_percent(512, 2048) == 25.0
    assert share_percent(512, 0) is None
    assert share_percent(None, 2048) is None


def test_table_cells_follow_the_unit():
    by_name = {m.name: m for m in METRICS}
    assert by_name["bytes"].human(1536) == "1.50 KiB"
    assert by_name["files"].human(12345) == "12,345"
    assert by_name["average_age_days"].human(2.6) == "3 d"
    assert by_name["old_files"].human(None) == "-"
