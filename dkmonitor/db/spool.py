"""The local spool: scan results kept on disk while the database is unreachable.

One JSON file per run in ``{state_dir}/spool``, written atomically (temp file
+ rename) so a crash never leaves half a record. ``replay`` stores them in the
order they were taken and removes each file only after its transaction has
committed; a record already stored (same run_id) is not stored twice, so an
interrupted replay is safe to repeat.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from dkmonitor.db.backends import error_line, is_unavailable
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.lock import AlreadyRunning, task_lock
from dkmonitor.safefs import write_private_file

if TYPE_CHECKING:
    from dkmonitor.db.engine import Database

log = logging.getLogger(__name__)


def spool_dir(state_dir: Path) -> Path:
    return state_dir / "spool"


def spool_record(state_dir: Path, record: ScanRecord) -> Path:
    """Write one record to the spool (0600: it names users and paths)."""
    stamp = record.started_at.strftime("%Y%m%dT%H%M%S%f")
    data = json.dumps(record.to_json()).encode("utf-8")
    return write_private_file(spool_dir(state_dir), f"{stamp}-{record.run_id}.json", data)


def spooled_files(state_dir: Path) -> list[Path]:
    directory = spool_dir(state_dir)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("*.json") if not path.name.startswith("."))


def replay(database: Database, state_dir: Path) -> int:
    """Store every spooled run, oldest first; returns how many files were replayed.

    One replayer per state directory at a time (a flock; task names cannot
    contain a space, so "spool replay" never clashes with a task's lock): two
    runs starting together would otherwise store the same file twice.
    """
    try:
        with task_lock(state_dir, "spool replay"):
            return _replay(database, state_dir)
    except AlreadyRunning:
        log.info("another dkmonitor process is replaying %s", spool_dir(state_dir))
        return 0


def _replay(database: Database, state_dir: Path) -> int:
    replayed = 0
    files = spooled_files(state_dir)
    if not files:
        return 0
    # Imported only when there is something to replay: a run stores through
    # plain SQL when it can (dkmonitor.db.plainwrite) and never loads SQLAlchemy.
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:  # replayed meanwhile
            continue
        try:
            record = ScanRecord.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            bad = path.with_suffix(".bad")
            path.rename(bad)
            log.error("spool file %s is unreadable (%s); kept as %s", path, exc, bad)
            continue
        try:
            with database.session() as session:
                store_scan(session, record)
        except IntegrityError:  # the same run_id committed by someone else in between
            log.info("spooled run %s was already stored", record.run_id)
        except SQLAlchemyError as exc:
            if not is_unavailable(exc):
                raise
            log.error(
                "replaying the spool stopped, database unreachable again: %s",
                error_line(exc, database.parsed_url),
            )
            break
        path.unlink(missing_ok=True)
        replayed += 1
        log.info("replayed spooled run %s of task %s", record.run_id, record.task_name)
    return replayed
