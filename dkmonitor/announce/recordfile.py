"""The file of announced files in root's record: its format, how it is built and read.

Why a sorted file rather than rows in SQLite: an announcing run rewrites the
whole announcement (a million files on a big scratch area) at every run.
SQLite did that with one upsert per file, which cost several times the scan
itself. Here the new announcement is one sequential merge of the scan's
candidates (sorted in bounded chunks) with the previous file, both in
(uid, st_dev, st_ino) order, so one user's files are one byte range and the
whole update costs about what copying the file costs. ``_recordio.c`` does the
per-file work (sorting on one thread per spool, the merge shared between
threads by ranges of owners; ``recordio.h`` says which file does what); the
Python functions here are the reference and the fallback when it could not be
compiled (tests check both write the same bytes).

Format (native byte order): ``DKMANN01``, entry count u64, then the entries,
each ``ENTRY`` (uid, gid, dev, ino, size, mtime_ns, last use, parent_ino,
announced_at, path length, pad) followed by the path below the target.
A file keeps its announced_at while (uid, dev, ino, size, mtime_ns) are
unchanged; anything else is a new announcement.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from dkmonitor.announce.spool import read_spool
from dkmonitor.announce.summary import escape_path
from dkmonitor.records import FrozenRecord
from dkmonitor.safefs import write_all
from dkmonitor.units import epoch_iso_utc

try:  # built by setup.py when a compiler is there
    from dkmonitor.announce import _recordio
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    _recordio = None  # type: ignore[assignment]

MAGIC = b"DKMANN01"
HEADER = struct.Struct("=8sQ")
ENTRY = struct.Struct("=IIQQqqdQdII")
PAIR = struct.Struct("=QQ")  # (st_dev, st_ino) of a file acted on
SHOWN = struct.Struct("=qdd")  # what a list shows of an entry (size, last use, date), digested
assert ENTRY.size == 72
CHUNK_BYTES = 32 << 20  # sorting memory (keys, directories, spool pages); more spill to runs
SHARE_FROM = 1 << 16  # candidates from which the merge is shared between threads by owner
FAN_IN = 16  # sorted runs merged at a time into a longer one (open files stay few)
READ_BYTES = 1 << 20


class Entry(NamedTuple):
    """One announced file as stored (named tuples: a dataclass costs a run's start-up more)."""

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


class UserRange(NamedTuple):
    """One user's current announcement, and where its entries are in the file."""

    files: int
    bytes: int
    new_files: int  # first listed by this run
    first_at: float  # the earliest announced_at of their files
    start: int
    end: int
    digest: int = 0  # of its entries: an unchanged list need not be written again


@dataclass(frozen=True, repr=False, eq=False)
class Built(FrozenRecord):
    users: dict[int, UserRange]
    told: dict[int, int]  # uid -> previous files a notice had told them of
    dropped: int
    count: int
    unchanged: bool = False  # the new record is the previous one: nothing was written
    # uid -> (sum, count) of the owner's candidates (recordio_sets.c); the compiled
    # build's with a set key, empty otherwise
    sets: dict[int, tuple[int, int]] = field(default_factory=dict)


class Filters(NamedTuple):
    """What leaves the candidates out: exempt owners and subtrees, files acted on now."""

    uids: frozenset[int] = frozenset()
    paths: tuple[bytes, ...] = ()  # below the target, no trailing slash; b"" is all of it
    acted: bytes = b""  # packed (st_dev, st_ino) u64 pairs


def compiled() -> bool:
    return _recordio is not None


def build(spools: tuple[int, ...], prev_fd: int | None, out_fd: int, dropped_fd: int,
          tmp_dir_fd: int, root_dev: int, now: float, filters: Filters,
          told_since: dict[int, float | None], *, use_compiled: bool = True,
          chunk_bytes: int = CHUNK_BYTES, share_from: int = SHARE_FROM,
          fan_in: int = FAN_IN, known: dict[int, int] | None = None,
          set_key: bytes = b"", prev_sets: dict[int, tuple[int, int]] | None = None) -> Built:
    """Write the new record to ``out_fd`` and the dropped entries to ``dropped_fd``.

    ``known``: the users' digests in the previous record, as the build that
    wrote it returned them. The compiled build reuses them for users whose
    entries are all unchanged rather than digesting those again; the result
    is the same with or without them (the reference ignores them).

    ``set_key`` (16 random bytes, root's): the compiled build sums up each
    owner's candidates and returns them (``Built.sets``); an owner whose sum is
    the one in ``prev_sets`` keeps their previous entries without being sorted
    or merged again. ``prev_sets`` must be those the build of ``prev_fd``
    returned, under the same key and filters, with nothing acted on now
    (AnnounceRecord checks that); the result is then the same without them.
    """
    if use_compiled and _recordio is not None:
        users, told, dropped, count, unchanged, sets = _recordio.build(
            list(spools), -1 if prev_fd is None else prev_fd, out_fd, dropped_fd,
            tmp_dir_fd, root_dev, now, sorted(filters.uids), list(filters.paths),
            filters.acted, told_since, chunk_bytes, share_from, fan_in, known or {},
            set_key, prev_sets or {})
        return Built({u[0]: UserRange(*u[1:]) for u in users}, told, dropped, count, unchanged,
                     sets)
    return _build_python(spools, prev_fd, out_fd, dropped_fd, root_dev, now, filters,
                         told_since)


def _kept(filters: Filters, uid: int, dev: int, ino: int, path: bytes,
          acted: set[tuple[int, int]]) -> bool:
    if uid in filters.uids or (dev, ino) in acted:
        return False
    return not any(p == b"" or path == p or path.startswith(p + b"/") for p in filters.paths)


def _build_python(spools: tuple[int, ...], prev_fd: int | None, out_fd: int, dropped_fd: int,
                  root_dev: int, now: float, filters: Filters,
                  told_since: dict[int, float | None]) -> Built:
    """The reference: same output as ``_recordio.build``, holding the candidates in memory."""
    acted = set(PAIR.iter_unpack(filters.acted))
    cands: list[tuple[int, int, int, bytes, Entry]] = []
    for spool in spools:
        for _dev, dir_ino, dir_path, (uid, gid, ino, size, mtime_ns), name, used in \
                read_spool(spool):
            path = dir_path + b"/" + name if dir_path else name
            if _kept(filters, uid, root_dev, ino, path, acted):
                entry = Entry(root_dev, ino, uid, gid, size, mtime_ns, used, dir_ino, path, 0.0)
                cands.append((uid, root_dev, ino, path, entry))
    cands.sort(key=lambda c: c[:4])
    prev = iter_entries(prev_fd) if prev_fd is not None else iter(())
    pending = next(prev, None)
    users: dict[int, list[float]] = {}
    told: dict[int, int] = {}
    out = bytearray(HEADER.size)
    dropped = bytearray()
    last_key: tuple[int, int, int] | None = None
    count = ndropped = 0

    def leave(entry: Entry) -> None:
        since = told_since.get(entry.uid)
        if since is not None and entry.announced_at <= since:
            told[entry.uid] = told.get(entry.uid, 0) + 1

    for uid, dev, ino, _path, cand in cands:
        key = (uid, dev, ino)
        if key == last_key:
            continue
        last_key = key
        announced_at = now
        while pending is not None and (pending.uid, pending.dev, pending.ino) < key:
            leave(pending)
            dropped += pack_entry(pending)
            ndropped += 1
            pending = next(prev, None)
        if pending is not None and (pending.uid, pending.dev, pending.ino) == key:
            leave(pending)
            if (pending.size, pending.mtime_ns) == (cand.size, cand.mtime_ns):
                announced_at = pending.announced_at
            pending = next(prev, None)
        user = users.setdefault(uid, [0, 0, 0, announced_at, len(out), 0, 0])
        user[0] += 1
        user[1] += cand.size
        user[2] += announced_at >= now
        user[3] = min(user[3], announced_at)
        packed = pack_entry(cand, announced_at)
        user[6] = mix(mix(int(user[6]), SHOWN.pack(cand.size, cand.used, announced_at)),
                      cand.path)
        out += packed
        user[5] = len(out)
        count += 1
    while pending is not None:
        leave(pending)
        dropped += pack_entry(pending)
        ndropped += 1
        pending = next(prev, None)
    out[:HEADER.size] = HEADER.pack(MAGIC, count)
    unchanged = prev_fd is not None and _whole(prev_fd) == out
    if not unchanged:
        write_all(out_fd, out)
    write_all(dropped_fd, dropped)
    ranges = {uid: UserRange(int(u[0]), int(u[1]), int(u[2]), u[3], int(u[4]), int(u[5]),
                             int(u[6])) for uid, u in users.items()}
    return Built(ranges, told, ndropped, count, unchanged)


_WORD = struct.Struct("=Q")
_PAIR_OF_WORDS = struct.Struct("=QQ")
_MIX_A = 0x9E3779B97F4A7C15
_MIX_B = 0xC2B2AE3D27D4EB4F
_MASK = (1 << 64) - 1


def mix(h: int, data: bytes) -> int:
    """``mix`` of recordio_merge.c: the digest of what a user's list shows, 16 bytes a step."""
    pairs = len(data) - len(data) % 16
    for w, v in _PAIR_OF_WORDS.iter_unpack(data[:pairs]):
        a = ((h ^ w) * _MIX_A) & _MASK
        b = ((h ^ v) * _MIX_B) & _MASK
        h = ((a ^ (a >> 29)) + (b ^ (b >> 32))) & _MASK
    at = pairs
    if len(data) - at >= 8:
        (w,) = _WORD.unpack_from(data, at)
        h = ((h ^ w) * _MIX_A) & _MASK
        h ^= h >> 29
        at += 8
    rest = len(data) - at
    word = int.from_bytes(data[at:], sys.byteorder)
    h = ((h ^ word ^ (rest << 56)) * _MIX_A) & _MASK
    return h ^ (h >> 32)


def pack_entry(entry: Entry, announced_at: float | None = None) -> bytes:
    at = entry.announced_at if announced_at is None else announced_at
    return ENTRY.pack(entry.uid, entry.gid, entry.dev, entry.ino, entry.size, entry.mtime_ns,
                      entry.used, entry.parent_ino, at, len(entry.path), 0) + entry.path


def _whole(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


def check_header(fd: int) -> int:
    """The entry count of a record file; ValueError if it is not one."""
    magic, count = HEADER.unpack(os.pread(fd, HEADER.size, 0))
    if magic != MAGIC:
        raise ValueError("not a dkmonitor announcement record")
    return int(count)


def iter_entries(fd: int, start: int | None = None, end: int | None = None
                 ) -> Iterator[Entry]:
    """The entries of a record file (or of a bare file of entries with ``start=0``), streamed."""
    at = HEADER.size if start is None else start
    if start is None:
        check_header(fd)
    for chunk_at, chunk in _chunks(fd, at, end):
        offset = 0
        while offset + ENTRY.size <= len(chunk):
            uid, gid, dev, ino, size, mtime_ns, used, parent_ino, announced_at, length, _ = \
                ENTRY.unpack_from(chunk, offset)
            if offset + ENTRY.size + length > len(chunk):
                break
            path = bytes(chunk[offset + ENTRY.size:offset + ENTRY.size + length])
            yield Entry(dev, ino, uid, gid, size, mtime_ns, used, parent_ino, path, announced_at)
            offset += ENTRY.size + length
        chunk_at.append(offset)


def _chunks(fd: int, at: int, end: int | None) -> Iterator[tuple[list[int], bytes]]:
    """Buffers of whole entries: the consumer reports how far it got in the list."""
    carry = b""
    while True:
        want = READ_BYTES if end is None else min(READ_BYTES, end - at)
        data = os.pread(fd, want, at) if want > 0 else b""
        at += len(data)
        buffer = carry + data
        if not buffer:
            return
        used: list[int] = []
        yield used, buffer
        consumed = used[0] if used else len(buffer)
        carry = buffer[consumed:]
        if not data:
            if carry:
                raise ValueError("announcement record: truncated entry")
            return


def list_lines(fd: int, start: int, end: int, notice_seconds: float, prefix: bytes,
               *, use_compiled: bool = True, limit: int = 64 * 1024) -> Iterator[bytes]:
    """One user's list lines (lists.py's format), ~``limit`` bytes at a time, streamed."""
    format_lines = (_recordio.format_lines if use_compiled and _recordio is not None
                    else _format_lines)
    for used, chunk in _chunks(fd, start, end):
        offset = 0
        while True:
            text, consumed = format_lines(memoryview(chunk)[offset:], notice_seconds, prefix,
                                          limit)
            if not consumed:
                break
            offset += consumed
            yield text
        used.append(offset)


def _format_lines(data: memoryview | bytes, notice_seconds: float, prefix: bytes, limit: int
                  ) -> tuple[bytes, int]:
    """The reference for ``_recordio.format_lines``."""
    lines: list[bytes] = []
    size = at = 0
    while size < limit and at + ENTRY.size <= len(data):
        fields = ENTRY.unpack_from(data, at)
        length = fields[9]
        if at + ENTRY.size + length > len(data):
            break
        path = prefix + bytes(data[at + ENTRY.size:at + ENTRY.size + length])
        escaped = escape_path(path).encode("ascii")
        line = b"%d\t%s\t%s\t%s\n" % (fields[4], _iso(fields[6]),
                                       _iso(fields[8] + notice_seconds), escaped)
        lines.append(line)
        size += len(line)
        at += ENTRY.size + length
    return b"".join(lines), at


def _iso(epoch: float) -> bytes:
    return epoch_iso_utc(epoch).encode("ascii")
