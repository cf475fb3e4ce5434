"""The facts `dkmonitor check` judges, read from the history database.

A handful of grouped queries, independent of the history's length thanks to
the (task_name, started_at) and (hostname, ...) indexes; the judging itself
is ``dkmonitor.health.evaluate``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dkmonitor.db.models import Scan, Task
from dkmonitor.health import TaskFacts


def _latest_per_task(session: Session, *where):  # type: ignore[no-untyped-def]
    """Latest scan row per task name among scans matching ``where``."""
    ranked = (
        select(
            Scan.task_name,
            Scan.started_at,
            Scan.status,
            Scan.message,
            Scan.disk_use_percent,
            func.row_number()
            .over(partition_by=Scan.task_name, order_by=(Scan.started_at.desc(), Scan.id.desc()))
            .label("rank"),
        )
        .where(*where)
        .subquery()
    )
    rows = session.execute(select(ranked).where(ranked.c.rank == 1))
    return {row.task_name: row for row in rows}


def load_facts(session: Session) -> tuple[list[TaskFacts], dict[str, datetime]]:
    """Enabled tasks with their latest readings, and the newest scan of each host."""
    tasks = list(
        session.scalars(select(Task).where(Task.enabled).order_by(Task.hostname, Task.name))
    )
    names = [task.name for task in tasks]
    latest = _latest_per_task(session, Scan.task_name.in_(names))
    disk = _latest_per_task(
        session, Scan.task_name.in_(names), Scan.status == "ok", Scan.disk_use_percent.is_not(None)
    )
    full_ok: dict[str, datetime] = dict(
        session.execute(
            select(Scan.task_name, func.max(Scan.started_at))
            .where(Scan.task_name.in_(names), Scan.kind == "full", Scan.status == "ok")
            .group_by(Scan.task_name)
        ).all()
    )
    hosts: dict[str, datetime] = dict(
        session.execute(
            select(Scan.hostname, func.max(Scan.started_at)).group_by(Scan.hostname)
        ).all()
    )
    facts = []
    for task in tasks:
        last = latest.get(task.name)
        reading = disk.get(task.name)
        facts.append(
            TaskFacts(
                name=task.name,
                hostname=task.hostname,
                warning=task.usage_warning_threshold,
                critical=task.usage_critical_threshold,
                created_at=task.created_at,
                disk_use_percent=reading.disk_use_percent if reading else None,
                disk_read_at=reading.started_at if reading else None,
                last_full_ok=full_ok.get(task.name),
                last_status=last.status if last else None,
                last_message=last.message if last else None,
            )
        )
    return facts, hosts
