"""The values a run builds from a scan: the record it stores, the per-owner rows.

Pure functions of the scan's result and the task, kept apart from the
runner so that the runner is only the order of the steps and the error
policy.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from dkmonitor.clock import utcnow
from dkmonitor.db.store import ScanRecord
from dkmonitor.metrics import totals_of
from dkmonitor.scan.disk import DiskUsage, mount_options
from dkmonitor.scan.users import username_for
from dkmonitor.taskspec import TaskSpec

if TYPE_CHECKING:  # a full run's types: a quick run (cron, hourly) imports none of them
    from dkmonitor.scan.stats import ScanResult
    from dkmonitor.taskrun import HistogramBucket, TopDirectory, UserUsageRow


def scan_record(
    task: TaskSpec,
    hostname: str,
    kind: str,
    started: datetime,
    disk: DiskUsage,
    result: ScanResult | None = None,
    users: tuple[UserUsageRow, ...] = (),
) -> ScanRecord:
    """A finished quick (no ``result``) or full scan, as stored or spooled."""
    return ScanRecord(
        run_id=str(uuid.uuid4()),
        task_name=task.name,
        hostname=hostname,
        target_path=task.target_path,
        kind=kind,
        status="ok",
        started_at=started,
        finished_at=utcnow(),
        disk_total=disk.total,
        disk_used=disk.used,
        disk_available=disk.available,
        disk_use_percent=disk.percent,
        **totals_of(result),
        errors=result.errors if result is not None else 0,
        users=users,
        histograms=histogram_rows(result) if result is not None else (),
        top_directories=top_directory_rows(result) if result is not None else (),
    )


def histogram_rows(result: ScanResult) -> tuple[HistogramBucket, ...]:
    """The scan's size and age histograms as stored: each bucket by its lower edge."""
    from dkmonitor.taskrun import HistogramBucket

    rows = []
    for kind, buckets in (("size", result.size_histogram), ("age", result.age_histogram)):
        lower = 0
        for bucket in buckets:
            rows.append(HistogramBucket(kind, lower, bucket.files, bucket.bytes))
            lower = bucket.upper if bucket.upper is not None else lower
    return tuple(rows)


def top_directory_rows(result: ScanResult) -> tuple[TopDirectory, ...]:
    """The scan's top directories by bytes and by old bytes, ranked from 1."""
    from dkmonitor.taskrun import TopDirectory

    return tuple(
        TopDirectory(ranking, rank, top.path, top.files, top.bytes, top.old_bytes)
        for ranking, tops in (("bytes", result.top_dirs_by_bytes),
                              ("old_bytes", result.top_dirs_by_old_bytes))
        for rank, top in enumerate(tops, start=1)
    )


def failure_record(task: TaskSpec, hostname: str, kind: str, reason: str) -> ScanRecord:
    """A run that failed before it measured anything (a missing target, say)."""
    return ScanRecord(
        run_id=str(uuid.uuid4()),
        task_name=task.name,
        hostname=hostname,
        target_path=task.target_path,
        kind=kind,
        status="failed",
        started_at=utcnow(),
        finished_at=utcnow(),
        message=reason,
    )


def user_rows(result: ScanResult) -> tuple[UserUsageRow, ...]:
    """The scan's per-owner numbers as stored and mailed, largest first."""
    from dkmonitor.taskrun import UserUsageRow

    return tuple(
        sorted(
            (
                UserUsageRow.from_usage(uid, username_for(uid), usage)
                for uid, usage in result.by_uid.items()
            ),
            key=lambda row: (-row.bytes, row.username),
        )
    )


def noatime_warnings(task: TaskSpec) -> list[str]:
    """Ageing by atime on a noatime mount makes every file look old: say so."""
    if task.age_basis == "atime" and "noatime" in mount_options(task.target_path):
        return [
            f"task {task.name}: {task.target_path} is mounted noatime but the task ages files "
            "by atime; every file will look old (use --age-basis used)"
        ]
    return []
