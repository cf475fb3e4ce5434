"""The action journal: every move, delete, restore, skip and failure, in SQL.

Write-ahead: an act on a file (move, delete, restore) first commits its
*intent* (``begin``: a row with outcome ``pending``, the path, the planned
destination and temporary copy, and the file's device and inode), and only
then touches the file; its *completion* (``finish``) is buffered and
committed with the next intent, or at the end of the run. So no file is ever
moved or deleted without a durable row, and a crash at any point leaves at
most one ``pending`` row per act in progress, which the next run reconciles
(dkmonitor.clean.reconcile). Rows that need no act (skips, failures found
before acting) are buffered the same way. Paths are raw bytes
(``os.fsencode``) so non-UTF-8 names survive exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dkmonitor.db.engine import Database
from dkmonitor.db.models import Action, utcnow
from dkmonitor.enums import JOURNAL_ACTIONS, JOURNAL_OUTCOMES

log = logging.getLogger(__name__)

# The words of actions.action and actions.outcome, declared in dkmonitor.enums with the
# database's other enumerations (the models and migration 0009 make them CHECKs).
MOVE, DELETE, RESTORE = JOURNAL_ACTIONS
PENDING, DONE, SKIPPED, FAILED, INTERRUPTED = JOURNAL_OUTCOMES
DEFAULT_BATCH = 100


class JournalError(Exception):
    """The journal could not be written: acting further would go unrecorded."""


@dataclass(frozen=True)
class ActionRecord:
    action: str  # move | delete | restore
    outcome: str  # pending | done | skipped | failed | interrupted
    path: bytes
    destination: bytes | None = None
    size: int = 0
    uid: int | None = None
    username: str | None = None
    reason: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    restores_id: int | None = None  # for restores: the move row to mark restored_at
    temp: bytes | None = None  # the temporary copy an intent may leave behind
    dev: int | None = None  # the file acted on (device, inode) as checked
    ino: int | None = None


@dataclass(frozen=True)
class Completion:
    """The end of an act whose intent row is ``action_id``."""

    action_id: int
    outcome: str
    reason: str | None = None
    destination: bytes | None = None
    restores_id: int | None = None
    finished_at: datetime = field(default_factory=utcnow)


@dataclass
class Journal:
    """One task's journal for a run: durable intents, buffered completions."""

    database: Database
    task_name: str
    hostname: str
    scan_id: int | None
    batch_size: int = DEFAULT_BATCH
    run_id: str | None = None
    _pending: list[ActionRecord | Completion] = field(default_factory=list)

    def record(self, rec: ActionRecord) -> None:
        """A complete row (no act pending): committed with the next batch."""
        self._pending.append(rec)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def begin(self, rec: ActionRecord) -> int:
        """Commit the intent of an act (and everything buffered); returns its row id.

        Raises JournalError when the commit fails: the caller must not act.
        """
        rows, self._pending = self._pending, []
        try:
            with self.database.session() as session:
                self._write(session, rows)
                row = self._row(rec, PENDING)
                session.add(row)
                session.flush()
                action_id = row.id
        except SQLAlchemyError as exc:
            raise JournalError(_message(exc)) from None
        return action_id

    def finish(self, completion: Completion) -> None:
        """Complete an intent: buffered like ``record`` (a crash leaves it pending)."""
        self._pending.append(completion)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            with self.database.session() as session:
                self._write(session, rows)
        except SQLAlchemyError as exc:
            raise JournalError(_message(exc)) from None

    def _write(self, session: Session, items: list[ActionRecord | Completion]) -> None:
        for item in items:
            if isinstance(item, Completion):
                complete(session, item)
            else:
                session.add(self._row(item, item.outcome))
                if item.restores_id is not None and item.outcome == DONE:
                    _mark_restored(session, item.restores_id, item.created_at)

    def _row(self, rec: ActionRecord, outcome: str) -> Action:
        return Action(
            scan_id=self.scan_id,
            task_name=self.task_name,
            hostname=self.hostname,
            action=rec.action,
            outcome=outcome,
            reason=rec.reason,
            path=rec.path,
            destination=rec.destination,
            size=rec.size,
            uid=rec.uid,
            username=rec.username,
            created_at=rec.created_at,
            run_id=self.run_id,
            temp_path=rec.temp,
            file_dev=rec.dev,
            file_ino=rec.ino,
            restores_id=rec.restores_id,
            finished_at=None if outcome == PENDING else rec.created_at,
        )


def complete(session: Session, item: Completion) -> None:
    """Turn a pending row into its outcome (and mark the move a restore undid)."""
    values: dict[str, object] = {
        "outcome": item.outcome,
        "reason": item.reason,
        "finished_at": item.finished_at,
    }
    if item.destination is not None:
        values["destination"] = item.destination
    session.execute(update(Action).where(Action.id == item.action_id).values(**values))
    if item.restores_id is not None and item.outcome == DONE:
        _mark_restored(session, item.restores_id, item.finished_at)


def _mark_restored(session: Session, move_id: int, when: datetime) -> None:
    session.execute(update(Action).where(Action.id == move_id).values(restored_at=when))


def _message(exc: SQLAlchemyError) -> str:
    first = str(exc).strip().splitlines()[0]
    return f"cannot write the action journal: {first}"


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
