"""Saved tasks: create, read, change and remove rows of the tasks table.

Functions take a Session and plain TaskSpec values; validation happens in
``taskspec.validate`` before anything is written.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dkmonitor.db.models import Task
from dkmonitor.errors import TaskError
from dkmonitor.taskspec import TASK_FIELDS, TaskSpec, validate


def spec_from_row(row: Task) -> TaskSpec:
    return TaskSpec(**{name: getattr(row, name) for name in TASK_FIELDS})


def _row(session: Session, name: str) -> Task:
    row = session.scalar(select(Task).where(Task.name == name))
    if row is None:
        raise TaskError(f"task {name!r}: no such task (see `dkmonitor task list`)")
    return row


def get_task(session: Session, name: str) -> TaskSpec:
    return spec_from_row(_row(session, name))


def list_tasks(session: Session, hostname: str | None = None) -> list[TaskSpec]:
    query = select(Task).order_by(Task.hostname, Task.name)
    if hostname is not None:
        query = query.where(Task.hostname == hostname)
    return [spec_from_row(row) for row in session.scalars(query)]


def create_task(session: Session, spec: TaskSpec) -> TaskSpec:
    spec = validate(spec)
    if session.scalar(select(Task.id).where(Task.name == spec.name)) is not None:
        raise TaskError(f"task {spec.name!r}: already exists (use `dkmonitor task edit`)")
    session.add(Task(**spec.as_dict()))
    session.flush()
    return spec


def update_task(session: Session, name: str, changes: dict[str, object]) -> TaskSpec:
    row = _row(session, name)
    spec = validate(spec_from_row(row).with_changes(**changes))
    if spec.name != name and session.scalar(select(Task.id).where(Task.name == spec.name)):
        raise TaskError(f"task {spec.name!r}: already exists")
    for key, value in spec.as_dict().items():
        setattr(row, key, value)
    session.flush()
    return spec


def delete_task(session: Session, name: str) -> None:
    session.delete(_row(session, name))
    session.flush()

