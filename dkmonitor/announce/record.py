"""Root's record of what was announced to whom, and when: per task, in the state directory.

Why files of its own in the state directory rather than rows in the history
database: it holds one entry per announced *file* (millions on a big scratch
area), rewritten at every announcing run, and it only matters on the host that
runs the task. The history database stays small (DESIGN.md: no row per file
per run); this record stays the size of the current announcement, and lives
where only root can read it (state directory 0700, files 0600). The users'
copies (``publish``) are never read back: what root acts on comes from here.

Two parts: the announced files, one sorted file per generation
(``recordfile``: ``{task}.{n}.files``), and a small SQLite file
(``{task}.sqlite``) with who was mailed when and which generation is current.
A file is identified by (owner, st_dev, st_ino) and counted as the same
announced file only while its size and mtime are unchanged too; a file
replaced (new inode), rewritten or chowned starts a new announcement. A file
that is no longer a candidate (young again, gone, exempted) leaves the record
at the next announcing run.

A run writes the next generation beside the current one and makes it current
in the same SQLite transaction as its notice state; a run killed at any point
leaves the previous announcement whole (its unfinished generation is removed
by the next one). A dry run never makes its generation current.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

from dkmonitor.announce import recordfile
from dkmonitor.announce.recordfile import Built, Entry, Filters, UserRange
from dkmonitor.announce.spool import TMPFILE_FLAGS
from dkmonitor.records import FrozenRecord
from dkmonitor.safefs import make_private_dir, open_private, write_all

__all__ = ["AnnounceRecord", "Entry", "Filters", "NoticeState", "UserRange", "record_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    uid INTEGER PRIMARY KEY,
    last_notice_at REAL,           -- last purge notice mailed (or written, mail off)
    final_for REAL,                -- the purge date the final reminder was sent for
    final_sent_at REAL,
    list_digest TEXT               -- what the published list held (step.py: rewritten on change)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entry_digests (
    uid INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,   -- of the record file whose entries they digest
    digest INTEGER NOT NULL        -- recordfile.build's (u64, stored signed)
);
CREATE TABLE IF NOT EXISTS owner_sets (
    uid INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,   -- of the record file built from (or kept by) these
    sum INTEGER NOT NULL,          -- recordfile.build's keyed sum of the owner's candidates
    count INTEGER NOT NULL
);
"""

_FLAGS_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, repr=False, eq=False)
class NoticeState(FrozenRecord):
    last_notice_at: float | None
    final_for: float | None
    final_sent_at: float | None
    list_digest: str | None = None


def _signed(digest: int) -> int:
    """A u64 digest as SQLite's signed INTEGER holds it (``_unsigned`` undoes it)."""
    return digest - (1 << 64) if digest >> 63 else digest


def _unsigned(stored: int) -> int:
    return stored & (1 << 64) - 1


def record_path(state_dir: Path, task_name: str) -> Path:
    """Where a task's record lives: ``{state_dir}/announce/{quoted task name}.sqlite``."""
    return state_dir / "announce" / (quote(task_name, safe="") + ".sqlite")


def _files_pattern(task_name: str) -> re.Pattern[str]:
    return re.compile(re.escape(quote(task_name, safe="")) + r"\.(\d+)\.files")


class AnnounceRecord:
    """One task's announcement record, open for one run (inside one SQLite transaction)."""

    def __init__(self, connection: sqlite3.Connection, directory: Path, task_name: str,
                 dry_run: bool) -> None:
        self.db = connection
        self.directory = directory
        self.task_name = task_name
        self.dry_run = dry_run
        self.dir_fd = -1
        self.current_fd: int | None = None  # the generation in force when the run began
        self.generation = 0
        self.new_fd: int | None = None  # the generation this run wrote (not current yet)
        self.new_name: str | None = None
        self.dropped_fd: int | None = None
        self.built: Built | None = None
        self.acted = bytearray()  # (st_dev, st_ino) of files this run's clean-up took

    @classmethod
    def open(cls, state_dir: Path, task_name: str, *, dry_run: bool = False) -> Self:
        """Open (or, on a real run, create 0600 in a 0700 directory) the task's record.

        A dry run never creates it: with no record yet it works on an empty
        in-memory one, which says what a first run would announce.
        """
        path = record_path(state_dir, task_name)
        exists = path.exists()
        if dry_run and not exists:
            connection = sqlite3.connect(":memory:", isolation_level=None)
        else:
            if not dry_run:
                make_private_dir(path.parent, tighten=True)
                os.close(open_private(str(path), os.O_RDWR | os.O_CREAT))
            connection = sqlite3.connect(path, isolation_level=None)
        if not dry_run:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        record = cls(connection, path.parent, task_name, dry_run)
        try:
            record._start(exists)
        except BaseException:
            record.close()
            raise
        return record

    def _start(self, exists: bool) -> None:
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(users)")}
        if "list_digest" not in columns:  # a record of the first version
            self.db.execute("ALTER TABLE users ADD COLUMN list_digest TEXT")
        self.db.execute("BEGIN IMMEDIATE")
        if exists or not self.dry_run:
            self.dir_fd = os.open(self.directory, _DIR_FLAGS)
        row = self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        self.generation = int(row[0]) if row else 0
        if self.dir_fd >= 0:
            if self._has_table("files"):  # written by the first version (rows in SQLite)
                self._convert_rows()
            if self.generation and self.current_fd is None:
                self.current_fd = open_private(self._name(self.generation), os.O_RDONLY,
                                               dir_fd=self.dir_fd)
                recordfile.check_header(self.current_fd)
            if not self.dry_run:
                self._sweep()

    def _name(self, generation: int) -> str:
        return f"{quote(self.task_name, safe='')}.{generation}.files"

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                               (name,)).fetchone() is not None

    def _sweep(self) -> None:
        """Remove generations a killed run left behind (never the current one)."""
        pattern = _files_pattern(self.task_name)
        for name in os.listdir(self.dir_fd):
            found = pattern.fullmatch(name)
            if found and int(found[1]) != self.generation:
                os.unlink(name, dir_fd=self.dir_fd)

    def _convert_rows(self) -> None:
        """Move a first-version record (a ``files`` table) into a generation file, once."""
        rows = self.db.execute(
            "SELECT dev, ino, uid, gid, size, mtime_ns, used, parent_ino, path, announced_at "
            "FROM files ORDER BY uid, dev, ino")
        generation = self.generation + 1
        fd = (self.scratch_file() if self.dry_run
              else open_private(self._name(generation), _FLAGS_NEW, dir_fd=self.dir_fd))
        data = bytearray(recordfile.HEADER.size)
        count = 0
        for row in rows:
            data += recordfile.pack_entry(Entry(*row))
            count += 1
        data[:recordfile.HEADER.size] = recordfile.HEADER.pack(recordfile.MAGIC, count)
        write_all(fd, data)
        if self.dry_run:  # looked at, not changed: the converted copy is this run's only
            self.current_fd = fd
            return
        os.fsync(fd)
        os.close(fd)
        self.db.execute("DROP TABLE files")
        self._set_generation(generation)
        self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")

    def _set_generation(self, generation: int) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES ('generation', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(generation),))
        self.generation = generation

    # ------------------------------------------------------------ the announcement
    def update(self, spools: tuple[int, ...], root_dev: int, now: float, filters: Filters,
               *, use_compiled: bool = True) -> Built:
        """Write the next generation: this run's candidates (the scan's spools) merged
        with the current one; an unchanged file keeps the date it was first announced.

        Files this run's clean-up acted on (``acted``) are left out. Returns per
        user totals, how many previous files notices had told of, and more.
        """
        told_since = {uid: state.last_notice_at for uid, state in self.notice_states().items()}
        if self.dry_run or self.dir_fd < 0:
            out = self.scratch_file()
        else:
            self.new_name = self._name(self.generation + 1)
            out = open_private(self.new_name, _FLAGS_NEW, dir_fd=self.dir_fd)
        self.new_fd = out
        self.dropped_fd = self.scratch_file()
        tmp_fd = self.dir_fd if self.dir_fd >= 0 else os.open(self.work_dir, _DIR_FLAGS)
        basis = self._set_basis(root_dev, filters)
        try:
            with self.failures_named():
                self.built = recordfile.build(
                    spools, self.current_fd, out, self.dropped_fd, tmp_fd, root_dev, now,
                    Filters(filters.uids, filters.paths, bytes(self.acted)), told_since,
                    use_compiled=use_compiled, known=self._known_digests(),
                    set_key=self._set_key(), prev_sets=self._prev_sets(basis))
        finally:
            if tmp_fd != self.dir_fd:
                os.close(tmp_fd)
        if self.built.unchanged:  # the current generation stays: nothing new was written
            self._discard_new()
        self._remember_digests(self.built)
        self._remember_sets(self.built, basis)
        return self.built

    def _known_digests(self) -> dict[int, int]:
        """The users' digests in the current generation (build reuses an unchanged user's)."""
        if self.current_fd is None:
            return {}
        return {uid: _unsigned(digest) for uid, digest in self.db.execute(
            "SELECT uid, digest FROM entry_digests WHERE generation = ?", (self.generation,))}

    def _remember_digests(self, built: Built) -> None:
        """The new generation's digests, in the transaction that makes it current: a
        digest is only ever used with the entries it was taken of."""
        generation = self._generation_after(built)
        self.db.execute("DELETE FROM entry_digests")
        self.db.executemany(
            "INSERT INTO entry_digests VALUES (?, ?, ?)",
            ((uid, generation, _signed(user.digest)) for uid, user in built.users.items()))

    def _generation_after(self, built: Built) -> int:
        """The generation current once this run commits: the new one unless unchanged."""
        return self.generation if built.unchanged else self.generation + 1

    def _set_key(self) -> bytes:
        """The key of the owners' sets (recordio_sets.c): random, made once, root's only."""
        row = self.db.execute("SELECT value FROM meta WHERE key='set_key'").fetchone()
        if row is not None:
            return bytes.fromhex(row[0])
        key = os.urandom(16)
        self.db.execute("INSERT INTO meta VALUES ('set_key', ?)", (key.hex(),))
        return key

    def _set_basis(self, root_dev: int, filters: Filters) -> str | None:
        """What besides the candidates decides an owner's entries: the device and the
        exemptions. None when this run's clean-up acted on files (they are left out of
        the new record, so its entries are not those of the candidates alone)."""
        if self.acted:
            return None
        return json.dumps([root_dev, sorted(filters.uids), sorted(p.hex() for p in filters.paths)])

    def _prev_sets(self, basis: str | None) -> dict[int, tuple[int, int]]:
        """The owners' sets of the current generation, if it was built on the same basis:
        an owner whose candidates sum up the same keeps their entries (recordfile.build)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='set_basis'").fetchone()
        if self.current_fd is None or basis is None or row is None or row[0] != basis:
            return {}
        return {uid: (_unsigned(total), count) for uid, total, count in self.db.execute(
            "SELECT uid, sum, count FROM owner_sets WHERE generation = ?", (self.generation,))}

    def _remember_sets(self, built: Built, basis: str | None) -> None:
        """This run's sets, for the generation it leaves current, in the same transaction;
        none when the entries were not decided by the candidates and the basis alone."""
        generation = self._generation_after(built)
        self.db.execute("DELETE FROM owner_sets")
        if basis is None or not built.sets:
            return
        self.db.execute(
            "INSERT INTO meta VALUES ('set_basis', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (basis,))
        self.db.executemany(
            "INSERT INTO owner_sets VALUES (?, ?, ?, ?)",
            ((uid, generation, _signed(total), count)
             for uid, (total, count) in built.sets.items()))

    def _discard_new(self) -> None:
        if self.new_name is not None:
            os.unlink(self.new_name, dir_fd=self.dir_fd)
        if self.new_fd is not None:
            os.close(self.new_fd)
        self.new_name = self.new_fd = None

    def _listed_fd(self) -> int | None:
        """The generation this run's lists come from: the new one, or the current
        one when nothing changed."""
        return self.new_fd if self.new_fd is not None else self.current_fd

    @property
    def work_dir(self) -> Path:
        """Where the run's unnamed files go: beside the record (/tmp for a dry run's)."""
        return self.directory if self.dir_fd >= 0 else Path("/tmp")

    @contextmanager
    def failures_named(self) -> Iterator[None]:
        """An OSError that names no file (the compiled build's, a spool's write) names
        the work directory: with a full disk, that is where room must be made."""
        try:
            yield
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self.work_dir)
            raise

    def scratch_file(self) -> int:
        """An unnamed private file beside the record (gone when closed)."""
        return os.open(self.work_dir, TMPFILE_FLAGS, 0o600)

    def took(self, dev: int, ino: int) -> None:
        """The clean-up moved or deleted this file: it leaves the announcement."""
        self.acted += recordfile.PAIR.pack(dev, ino)

    def dropped(self) -> Iterator[Entry]:
        """Files announced before that this run did not list (after ``update``)."""
        if self.dropped_fd is None:
            return iter(())
        return recordfile.iter_entries(self.dropped_fd, 0)

    def user_lines(self, uid: int, notice_seconds: float, prefix: bytes,
                   *, use_compiled: bool = True) -> Iterator[bytes]:
        """One user's list lines from the generation this run wrote, streamed."""
        source = self._listed_fd()
        assert self.built is not None and source is not None
        user = self.built.users.get(uid)
        if user is None:
            return iter(())
        return recordfile.list_lines(source, user.start, user.end, notice_seconds,
                                     prefix, use_compiled=use_compiled)

    def matured(self, before: float) -> Iterator[Entry]:
        """Files of the current generation announced at ``before`` or earlier (streamed)."""
        if self.current_fd is None:
            return
        for entry in recordfile.iter_entries(self.current_fd):
            if entry.announced_at <= before:
                yield entry

    def entries(self) -> Iterator[Entry]:
        """Every file of the current generation (what the tests check a record by)."""
        if self.current_fd is not None:
            yield from recordfile.iter_entries(self.current_fd)

    # ------------------------------------------------------------ who was told when
    def notice_states(self) -> dict[int, NoticeState]:
        return {
            uid: NoticeState(last, final_for, final_at, digest)
            for uid, last, final_for, final_at, digest in self.db.execute(
                "SELECT uid, last_notice_at, final_for, final_sent_at, list_digest FROM users")
        }

    def listed(self, uid: int, digest: str) -> None:
        """The user's list as published now (see step._publish_list)."""
        self.db.execute(
            "INSERT INTO users (uid, list_digest) VALUES (?, ?) "
            "ON CONFLICT (uid) DO UPDATE SET list_digest = excluded.list_digest",
            (uid, digest),
        )

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
        """Make this run's announcement durable (a dry run rolls it back instead).

        The new generation is flushed to disk before the transaction naming it
        commits; the previous one is removed only after.
        """
        if self.dry_run:
            self.db.execute("ROLLBACK")
            self.db.execute("BEGIN IMMEDIATE")
            return
        previous = self.generation
        if self.new_name is not None and self.new_fd is not None:
            os.fsync(self.new_fd)
            os.fsync(self.dir_fd)
            self._set_generation(previous + 1)
        self.db.execute("COMMIT")
        if self.new_name is not None and self.new_fd is not None:
            if previous:
                os.unlink(self._name(previous), dir_fd=self.dir_fd)
            if self.current_fd is not None:
                os.close(self.current_fd)
            self.current_fd, self.new_fd, self.new_name = self.new_fd, None, None
        self.db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        """Roll back whatever was not committed (and remove its generation) and close."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()
        if self.new_name is not None:
            try:
                os.unlink(self.new_name, dir_fd=self.dir_fd)
            except OSError:
                pass
        for fd in (self.current_fd, self.new_fd, self.dropped_fd):
            if fd is not None:
                os.close(fd)
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
        self.current_fd = self.new_fd = self.dropped_fd = None
        self.dir_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
