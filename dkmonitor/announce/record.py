"""Root's record of what was announced to whom, and when: one SQLite file per task.

Why a file of its own in the state directory rather than rows in the history
database: it holds one row per announced *file* (millions on a big scratch
area), rewritten at every announcing run, and it only matters on the host that
runs the task. The history database stays small (DESIGN.md: no row per file
per run); this file stays the size of the current announcement, and lives
where only root can read it (state directory 0700, file 0600). The users'
copies (``publish``) are never read back: what root acts on comes from here.

A file is identified by (owner, st_dev, st_ino) and counted as the same
announced file only while its size and mtime are unchanged too; a file
replaced (new inode), rewritten or chowned starts a new announcement. Rows are
clustered by owner (the primary key), so one user's list is read as one range
and no second index has to be kept up to date for a million rows. A file that is no
longer a candidate (young again, gone, exempted) leaves the record at the next
announcing run.

All updates of one run happen in one transaction: a run killed halfway leaves
the previous announcement exactly as it was. A dry run rolls it back.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

from dkmonitor.safefs import make_private_dir, open_private

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    used REAL NOT NULL,            -- last use (epoch seconds) by the task's age basis
    parent_ino INTEGER NOT NULL,   -- the directory it was listed in (re-checked before acting)
    path BLOB NOT NULL,            -- below the target, raw bytes
    announced_at REAL NOT NULL,    -- epoch seconds it was first listed, unchanged since
    seen INTEGER NOT NULL,         -- the announcing run that last listed it
    PRIMARY KEY (uid, dev, ino)    -- clustered by owner: one user's list is one range
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    uid INTEGER PRIMARY KEY,
    last_notice_at REAL,           -- last purge notice mailed (or written, mail off)
    final_for REAL,                -- the purge date the final reminder was sent for
    final_sent_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# One row of ``files`` as the walk produces it (see ``Entry``).
_UPSERT = """
INSERT INTO files (dev, ino, uid, gid, size, mtime_ns, used, parent_ino, path,
                   announced_at, seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (uid, dev, ino) DO UPDATE SET
    announced_at = CASE
        WHEN files.size = excluded.size AND files.mtime_ns = excluded.mtime_ns
        THEN files.announced_at ELSE excluded.announced_at END,
    gid = excluded.gid, size = excluded.size,
    mtime_ns = excluded.mtime_ns, used = excluded.used,
    parent_ino = excluded.parent_ino, path = excluded.path, seen = excluded.seen
"""

BATCH = 20_000
CACHE_KIB = 32 * 1024

# A candidate as ``add`` takes it: dev, ino, uid, gid, size, mtime_ns, used, parent_ino, path.
Row = tuple[int, int, int, int, int, int, float, int, bytes]


@dataclass(frozen=True, slots=True)
class Entry:
    """One announced file as stored."""

    dev: int
    ino: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    used: float
    parent_ino: int
    path: bytes  # below the target
    announced_at: float


@dataclass
class UserTotals:
    """One user's current announcement."""

    files: int = 0
    bytes: int = 0
    new_files: int = 0  # first listed by this run
    first_at: float = 0.0  # the earliest announced_at of their files


@dataclass(frozen=True)
class NoticeState:
    last_notice_at: float | None
    final_for: float | None
    final_sent_at: float | None


def record_path(state_dir: Path, task_name: str) -> Path:
    """Where a task's record lives: ``{state_dir}/announce/{quoted task name}.sqlite``."""
    return state_dir / "announce" / (quote(task_name, safe="") + ".sqlite")


class AnnounceRecord:
    """One task's announcement record, open for one run."""

    def __init__(self, connection: sqlite3.Connection, dry_run: bool) -> None:
        self.db = connection
        self.dry_run = dry_run
        self.run_number = 0

    @classmethod
    def open(cls, state_dir: Path, task_name: str, *, dry_run: bool = False) -> Self:
        """Open (or, on a real run, create 0600 in a 0700 directory) the task's record.

        A dry run never creates it: with no record yet it works on an empty
        in-memory one, which says what a first run would announce.
        """
        path = record_path(state_dir, task_name)
        if dry_run and not path.exists():
            connection = sqlite3.connect(":memory:", isolation_level=None)
        else:
            if not dry_run:
                make_private_dir(path.parent, tighten=True)
                os.close(open_private(str(path), os.O_RDWR | os.O_CREAT))
            connection = sqlite3.connect(path, isolation_level=None)
        if not dry_run:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        # a bounded page cache (32 MiB) big enough that a million upserts in
        # inode order do not go to the disk page by page
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        connection.executescript(_SCHEMA)
        record = cls(connection, dry_run)
        record.db.execute("BEGIN IMMEDIATE")
        return record

    def _next_run(self) -> None:
        """Number this announcing run (rows it lists carry it; older ones are dropped)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
        self.run_number = (int(row[0]) if row else 0) + 1
        self.db.execute(
            "INSERT INTO meta VALUES ('run', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(self.run_number),),
        )

    # ------------------------------------------------------------ the announcement
    def add(self, rows: Iterable[Row], now: float) -> None:
        """List this run's candidates; a file unchanged since it was announced keeps its date.

        ``rows``: (dev, ino, uid, gid, size, mtime_ns, used, parent_ino, path),
        plain tuples because there may be millions.
        """
        self._next_run()
        stamp = (now, self.run_number)
        batch: list[tuple[int | float | bytes, ...]] = []
        for row in rows:
            batch.append(row + stamp)
            if len(batch) >= BATCH:
                self.db.executemany(_UPSERT, batch)
                batch.clear()
        if batch:
            self.db.executemany(_UPSERT, batch)

    def dropped(self) -> Iterator[Entry]:
        """Files announced before that this run did not list (call before ``prune``)."""
        yield from self._entries("WHERE seen < ?", (self.run_number,))

    def prune(self) -> int:
        """Forget the files this run did not list; how many."""
        cursor = self.db.execute("DELETE FROM files WHERE seen < ?", (self.run_number,))
        return cursor.rowcount

    def totals(self, now: float) -> dict[int, UserTotals]:
        """uid -> the user's current announcement (files, bytes, new at ``now``, first date)."""
        result: dict[int, UserTotals] = {}
        for uid, files, size, new, first in self.db.execute(
            "SELECT uid, count(*), sum(size), sum(announced_at >= ?), "
            "min(announced_at) FROM files GROUP BY uid",
            (now,),
        ):
            result[uid] = UserTotals(files, size or 0, new or 0, first)
        return result

    def user_lines(self, uid: int) -> Iterator[tuple[int, float, float, bytes]]:
        """One user's announced files as (size, used, announced_at, path), streamed."""
        cursor = self.db.execute(
            "SELECT size, used, announced_at, path FROM files WHERE uid = ?", (uid,))
        while rows := cursor.fetchmany(10_000):
            yield from rows

    def matured(self, before: float) -> Iterator[Entry]:
        """Files announced at ``before`` or earlier (streamed, in no particular order)."""
        yield from self._entries("WHERE announced_at <= ?", (before,))

    def _entries(self, where: str, params: tuple[float | int, ...]) -> Iterator[Entry]:
        cursor = self.db.execute(
            "SELECT dev, ino, uid, gid, size, mtime_ns, used, parent_ino, path, announced_at "
            f"FROM files {where}", params,
        )
        while True:
            rows = cursor.fetchmany(5_000)
            if not rows:
                return
            for row in rows:
                yield Entry(*row)

    # ------------------------------------------------------------ who was told when
    def told_counts(self) -> dict[int, int]:
        """uid -> files of theirs in the record that a notice already told them of."""
        return dict(self.db.execute(
            "SELECT f.uid, count(*) FROM files f JOIN users u ON u.uid = f.uid "
            "WHERE u.last_notice_at IS NOT NULL AND f.announced_at <= u.last_notice_at "
            "GROUP BY f.uid"
        ).fetchall())

    def notice_states(self) -> dict[int, NoticeState]:
        return {
            uid: NoticeState(last, final_for, final_at)
            for uid, last, final_for, final_at in self.db.execute(
                "SELECT uid, last_notice_at, final_for, final_sent_at FROM users")
        }

    def noticed(self, uid: int, at: float) -> None:
        self.db.execute(
            "INSERT INTO users (uid, last_notice_at) VALUES (?, ?) "
            "ON CONFLICT (uid) DO UPDATE SET last_notice_at = excluded.last_notice_at",
            (uid, at),
        )

    def final_sent(self, uid: int, purge_at: float, at: float) -> None:
        self.db.execute(
            "INSERT INTO users (uid, final_for, final_sent_at) VALUES (?, ?, ?) "
            "ON CONFLICT (uid) DO UPDATE SET final_for = excluded.final_for, "
            "final_sent_at = excluded.final_sent_at",
            (uid, purge_at, at),
        )

    def forget_users(self, keep: Iterable[int]) -> None:
        """Drop the notice state of users with nothing announced any more."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (uid INTEGER PRIMARY KEY)")
        self.db.execute("DELETE FROM keep")
        self.db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", ((u,) for u in keep))
        self.db.execute("DELETE FROM users WHERE uid NOT IN (SELECT uid FROM keep)")

    # ------------------------------------------------------------ end of the run
    def commit(self) -> None:
        """Make this run's announcement durable (a dry run rolls it back instead)."""
        if self.dry_run:
            self.db.execute("ROLLBACK")
        else:
            self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        """Roll back whatever was not committed and close."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
