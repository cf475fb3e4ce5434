"""The action journal: every move, delete, restore, skip and failure, in SQL.

Rows are buffered and committed in small batches while the run goes on, so
a crash mid-run keeps the record of what was already done (at most one
batch is lost, and every action is also in the log). Paths are stored as
raw bytes (``os.fsencode``) so non-UTF-8 names survive exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from dkmonitor.db.engine import Database
from dkmonitor.db.models import Action, utcnow

log = logging.getLogger(__name__)

MOVE, DELETE, RESTORE = "move", "delete", "restore"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
DEFAULT_BATCH = 100


class JournalError(Exception):
    """The journal could not be written: acting further would go unrecorded."""


@dataclass(frozen=True)
class ActionRecord:
    action: str  # move | delete | restore
    outcome: str  # done | skipped | failed
    path: bytes
    destination: bytes | None = None
    size: int = 0
    uid: int | None = None
    username: str | None = None
    reason: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    restores_id: int | None = None  # for restores: the move row to mark restored_at


@dataclass
class Journal:
    """Buffers ActionRecords for one task's run and commits them in batches."""

    database: Database
    task_name: str
    hostname: str
    scan_id: int | None
    batch_size: int = DEFAULT_BATCH
    _pending: list[ActionRecord] = field(default_factory=list)

    def record(self, rec: ActionRecord) -> None:
        self._pending.append(rec)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            with self.database.session() as session:
                for rec in rows:
                    session.add(self._row(rec))
                    if rec.restores_id is not None and rec.outcome == DONE:
                        session.execute(
                            update(Action)
                            .where(Action.id == rec.restores_id)
                            .values(restored_at=rec.created_at)
                        )
        except SQLAlchemyError as exc:
            first = str(exc).strip().splitlines()[0]
            raise JournalError(f"cannot write the action journal: {first}") from None

    def _row(self, rec: ActionRecord) -> Action:
        return Action(
            scan_id=self.scan_id,
            task_name=self.task_name,
            hostname=self.hostname,
            action=rec.action,
            outcome=rec.outcome,
            reason=rec.reason,
            path=rec.path,
            destination=rec.destination,
            size=rec.size,
            uid=rec.uid,
            username=rec.username,
            created_at=rec.created_at,
        )


@dataclass(frozen=True)
class MovedFile:
    """A journaled move that has not been restored yet."""

    id: int
    path: bytes
    destination: bytes
    size: int
    uid: int | None
    username: str | None
    created_at: datetime


def moved_files(
    database: Database,
    task_name: str,
    hostname: str,
    *,
    username: str | None = None,
    since: datetime | None = None,
    page: int = 500,
) -> Iterator[MovedFile]:
    """Done, not yet restored moves of a task on a host, oldest first, in pages.

    Paging by id keeps memory flat however long the journal is, and each
    page is read in its own short session.
    """
    last_id = 0
    while True:
        query = (
            select(Action)
            .where(
                Action.task_name == task_name,
                Action.hostname == hostname,
                Action.action == MOVE,
                Action.outcome == DONE,
                Action.restored_at.is_(None),
                Action.destination.is_not(None),
                Action.id > last_id,
            )
            .order_by(Action.id)
            .limit(page)
        )
        if username is not None:
            query = query.where(Action.username == username)
        if since is not None:
            query = query.where(Action.created_at >= since)
        with database.session() as session:
            rows = [
                MovedFile(
                    id=row.id,
                    path=bytes(row.path),
                    destination=bytes(row.destination or b""),
                    size=row.size,
                    uid=row.uid,
                    username=row.username,
                    created_at=row.created_at,
                )
                for row in session.scalars(query)
            ]
        yield from rows
        if len(rows) < page:
            return
        last_id = rows[-1].id
