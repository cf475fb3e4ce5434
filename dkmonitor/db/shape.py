"""A scan's shape beyond its per-user totals: size/age histograms and top directories.

Read back for the HTML report (and anything else) with plain SQL on a
``ReadConnection``, like the views. Buckets are named by their lower bound:
bytes for the ``size`` histogram, days for the ``age`` histogram; the
buckets themselves are the scanner's (documented with it). Top directories
are ranked ``bytes`` or ``old_bytes``, rank 1 first, with whole-subtree totals.
"""

from __future__ import annotations

from dkmonitor.db.readonly import ReadConnection
from dkmonitor.taskrun import HistogramBucket, TopDirectory


def histograms(reader: ReadConnection, scan_id: int) -> list[HistogramBucket]:
    """Both histograms of one scan, by kind then lower bound."""
    sql = (
        "SELECT kind, lower_bound, files, bytes FROM scan_histograms "
        "WHERE scan_id = ? ORDER BY kind, lower_bound"
    )
    return [HistogramBucket(*row) for row in reader.rows(sql, [scan_id])]


def top_directories(reader: ReadConnection, scan_id: int) -> list[TopDirectory]:
    """Both rankings of one scan's top directories, by ranking then rank."""
    sql = (
        "SELECT ranking, rank, path, files, bytes, old_bytes FROM scan_top_directories "
        "WHERE scan_id = ? ORDER BY ranking, rank"
    )
    return [TopDirectory(*row) for row in reader.rows(sql, [scan_id])]
