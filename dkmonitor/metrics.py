"""The scan's numbers, declared once.

``Totals`` is THE list of what a full scan measures per owner (and for the
whole target): each field is one metric, and its ``metric(...)`` default says
how people see it (table header, unit). Everything that copies the numbers
from one shape to the next reads this list instead of naming the fields:

* the runner's rows (``UserUsageRow.from_usage``, ``totals_of``),
* the stored columns (``db/models.py``; ``tests/test_metrics.py`` checks that
  ``scans`` and ``user_stats`` have a column of the right type per metric),
* the view/export records (``VIEW_KEYS``, ``db/queries.py``, ``db/export.py``),
* the table headers (``cli/view.py``).

Adding a per-user metric: a field here, the counter in ``scan/`` (``Usage``),
a field on ``taskrun.UserUsageRow``, a column on ``Scan`` and ``UserStat``,
and a migration. ``tests/test_metrics.py`` names whatever was forgotten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dkmonitor.records import FrozenRecord
from dkmonitor.units import human_bytes, human_count

if TYPE_CHECKING:
    from dkmonitor.scan.stats import ScanResult

COUNT = "count"
BYTES = "bytes"
DAYS = "days"


def metric(header: str, unit: str, *, table: bool = True, appended: bool = False) -> Any:
    """A ``Totals`` field: None by default, with its presentation in the metadata.

    ``table``: shown as a column in ``view`` tables (JSON and CSV show every
    metric). ``appended``: added after the first release, so it comes after
    ``errors`` in the JSON/CSV key order (positional CSV readers keep working).
    """
    info = {"header": header, "unit": unit, "table": table, "appended": appended}
    return dataclasses.field(default=None, metadata={"metric": info})


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Totals(FrozenRecord):
    """One owner's (or the whole target's) numbers; None where nothing was measured.

    The base of the records that carry the numbers (``ScanRecord``,
    ``ViewRecord``), so each metric's field is written here only.
    """

    files: int | None = metric("files", COUNT)
    bytes: int | None = metric("size", BYTES)
    allocated_bytes: int | None = metric("allocated", BYTES, table=False)
    old_files: int | None = metric("old files", COUNT)
    old_bytes: int | None = metric("old size", BYTES)
    average_age_days: float | None = metric("avg age", DAYS)
    # every entry the owner owns (files, directories, symlinks, others)
    inodes: int | None = metric("inodes", COUNT, table=False, appended=True)
    directories: int | None = metric("dirs", COUNT, table=False, appended=True)


@dataclass(frozen=True, repr=False, eq=False)
class Metric(FrozenRecord):
    """One declared number: its name (attribute, column and JSON key) and presentation."""

    name: str
    header: str
    unit: str
    table: bool
    appended: bool

    @property
    def kind(self) -> type:
        """The Python type of its values (and so of its stored column)."""
        return float if self.unit == DAYS else int

    def human(self, value: float | None) -> str:
        """The value as a table cell."""
        if value is None:
            return "-"
        if self.unit == BYTES:
            return human_bytes(value)
        if self.unit == DAYS:
            return f"{value:.0f} d"
        return human_count(int(value))


METRICS: tuple[Metric, ...] = tuple(
    Metric(f.name, **f.metadata["metric"]) for f in dataclasses.fields(Totals)
)
NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
TABLE_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.table)

# The keys of `view --format json|csv`, in order (DESIGN.md lists them).
PLACE_KEYS = ("task", "hostname", "target_path", "username", "uid", "scanned_at")
VIEW_KEYS: tuple[str, ...] = (
    *PLACE_KEYS,
    *(m.name for m in METRICS if not m.appended),
    "disk_use_percent",
    "errors",
    *(m.name for m in METRICS if m.appended),
)


def values_of(source: object, default: object = None) -> dict[str, Any]:
    """Every metric read from ``source``'s attributes (``default`` where it has none)."""
    return {name: getattr(source, name, default) for name in NAMES}


def values_from_row(row: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Every metric from a mapping keyed ``prefix + name`` (a labelled SQL row)."""
    return {name: row[prefix + name] for name in NAMES}


def share_percent(allocated_bytes: int | None, filesystem_bytes: int | None) -> float | None:
    """A user's share of a file system: allocated bytes over its size, percent.

    Allocated, not apparent: a sparse file takes no share it does not occupy
    (a 3 TiB sparse file showed 1221% when apparent bytes were used).
    """
    if allocated_bytes is None or not filesystem_bytes:
        return None
    return allocated_bytes * 100.0 / filesystem_bytes


def totals_of(result: ScanResult | None) -> dict[str, Any]:
    """The whole target's metrics of a scan (every metric None without a scan)."""
    if result is None:
        return values_of(None)
    return values_of(result.total, 0)
