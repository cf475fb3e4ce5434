"""The values a run builds from a scan: the record it stores, the per-owner rows.

Pure functions of the scan's result and the task, kept apart from the
runner so that the runner is only the order of the steps and the error
policy.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from dkmonitor.db.models import utcnow
from dkmonitor.db.store import ScanRecord
from dkmonitor.scan.disk import DiskUsage, mount_options
from dkmonitor.scan.stats import ScanResult
from dkmonitor.scan.users import username_for
from dkmonitor.taskrun import UserUsageRow
from dkmonitor.taskspec import TaskSpec


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
    total = result.total if result is not None else None
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
        files=total.files if total else None,
        bytes=total.bytes if total else None,
        allocated_bytes=total.allocated_bytes if total else None,
        old_files=total.old_files if total else None,
        old_bytes=total.old_bytes if total else None,
        average_age_days=total.average_age_days if total else None,
        errors=result.errors if result is not None else 0,
        users=users,
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
    return tuple(
        sorted(
            (
                UserUsageRow(
                    uid=uid,
                    username=username_for(uid),
                    files=usage.files,
                    bytes=usage.bytes,
                    allocated_bytes=usage.allocated_bytes,
                    old_files=usage.old_files,
                    old_bytes=usage.old_bytes,
                    average_age_days=usage.average_age_days,
                )
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
