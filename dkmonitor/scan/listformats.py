"""The record formats of site scanners' lists, each turned into one plain tuple.

Every format is read as GNU find's fields (:data:`DEV` ... :data:`PATH`, all
bytes): find's own records are split by the reader's loop itself, the others go
through a conversion (``FIELD_LISTS``) that raises ``ValueError`` for a
malformed record (the caller counts it as an error with its line number).
Plain records of every format are read by a compiled loop when it is built
(listcompiled.py, _listparse.c, which must read them as these functions do);
the rest come here.

The formats are documented, with the exact command that produces each one, in
docs/lists.md; the field order here is that contract:

``find``  GNU find, NUL-terminated records::

      find TARGET -xdev -printf '%D %i %n %U %s %b %A@ %T@ %C@ %y %p\\0'

``gpfs``  an mmapplypolicy LIST file (``-I defer``) from the rule in
          docs/lists.md: ``INODE GEN SNAPID SHOW -- PATH``, with ``ESCAPE '%/'``
          so that the path and SHOW are percent-encoded (RFC 3986), and SHOW =
          ``USER_ID|FILE_SIZE|KB_ALLOCATED|NLINK|MODE|ACCESS_TIME|MODIFICATION_TIME|CHANGE_TIME``
          with the times as the policy engine's ``VARCHAR(timestamp)`` in UTC.

``lfs``   Lustre ``lfs find`` (2.15+, which has ``-printf``), newline-terminated::

      lfs find TARGET -printf '%i %n %U %s %b %A@ %T@ %C@ %y %p\\n'
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

# Every record becomes find's fields, in this order (all bytes):
DEV, INO, NLINK, UID, SIZE, BLOCKS, ATIME, MTIME, CTIME, KIND, PATH = range(11)
# KIND is the %y letter: f regular file, d directory; any other (l, p, s, b, c,
# D, ?) is neither a file nor a directory. DEV tells apart inodes of different
# devices (find: %D) or snapshots (GPFS: the snapshot id); lfs lists: 0.
KINDS = frozenset((b"f", b"d", b"l", b"p", b"s", b"b", b"c", b"D", b"?"))

FORMATS = ("find", "gpfs", "lfs")
# How each format ends its records (the gpfs and lfs lists are line-based).
TERMINATORS = {"find": b"\0", "gpfs": b"\n", "lfs": b"\n"}

_NS = 1_000_000_000
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_GPFS_TYPES = {b"-": b"f", b"d": b"d", b"l": b"l", b"p": b"p", b"s": b"s", b"b": b"b",
               b"c": b"c"}


def epoch_ns(text: bytes) -> int:
    """``1796016202.4530975200`` (find's ``%A@``; lfs prints whole seconds) -> ns."""
    seconds, dot, fraction = text.partition(b".")
    if not dot:
        return int(seconds) * _NS
    if not fraction.isdigit():
        raise ValueError(f"bad timestamp {text!r}")
    part = int(fraction[:9].ljust(9, b"0"))
    if seconds.startswith(b"-"):
        return int(seconds) * _NS - part
    return int(seconds) * _NS + part


def utc_ns(text: bytes) -> int:
    """``2026-01-15 12:00:00.123456`` (GPFS ``VARCHAR(timestamp)``, UTC) -> ns.

    ``@`` is accepted between date and time too (mmapplypolicy's own messages use it).
    """
    date, clock = text[:10], text[11:]
    if text[10:11] not in (b" ", b"@") or len(clock) < 8 or clock[2:3] != b":":
        raise ValueError(f"bad timestamp {text!r}")
    day = datetime.date(int(date[:4]), int(date[5:7]), int(date[8:10])).toordinal()
    seconds = (day - _EPOCH_ORDINAL) * 86400 + int(clock[:2]) * 3600 + int(clock[3:5]) * 60
    seconds += int(clock[6:8])
    fraction = clock[9:] if clock[8:9] == b"." else b""
    return seconds * _NS + (int(fraction[:9].ljust(9, b"0")) if fraction else 0)


def _field_list_lfs(record: bytes) -> list[bytes]:
    """An lfs record in find's field order (no device: one file system, ``0``)."""
    fields = record.split(b" ", 9)
    if len(fields) != 10:
        raise ValueError(f"{len(fields)} fields, expected 10")
    fields.insert(0, b"0")
    return fields


def _find_time(ns: int) -> bytes:
    """ns -> find's ``%A@`` text (10 fractional digits), the loop's fast path."""
    seconds, nanos = divmod(ns, _NS)
    return b"%d.%09d0" % (seconds, nanos)


def _unescape(text: bytes) -> bytes:
    """Percent-decoding (ESCAPE '%/'), the separators of the documented SHOW done first."""
    if b"%" not in text:
        return text
    text = text.replace(b"%7C", b"|").replace(b"%20", b" ").replace(b"%3A", b":")
    return unquote_to_bytes(text) if b"%" in text else text


_UNUSED = b"0"  # a time the task's age basis does not read is not decoded


def _gpfs_field_list(basis: str) -> Callable[[bytes], list[bytes]]:
    """GPFS LIST records in find's field order; the snapshot id stands in for the device.

    Built per run with the age basis: only the times it reads are converted.
    Dates repeat across millions of records, so their day numbers are cached
    (a bounded dict, emptied when full: memory stays flat).
    """
    wanted = {"used": (True, True, False), "atime": (True, False, False),
              "mtime": (False, True, False), "ctime": (False, False, True)}[basis]
    days: dict[bytes, int] = {}

    def convert(text: bytes) -> bytes:
        """VARCHAR(timestamp) -> find's %A@ text, without going through datetime per record."""
        day = days.get(text[:10])
        if day is None:
            if len(days) > 100_000:
                days.clear()
            day = days[text[:10]] = utc_ns(text[:10] + b" 00:00:00") // _NS
        clock = text[11:]
        if text[10:11] not in (b" ", b"@") or clock[2:3] != b":" or clock[5:6] != b":":
            raise ValueError(f"bad timestamp {text!r}")
        seconds = day + int(clock[:2]) * 3600 + int(clock[3:5]) * 60 + int(clock[6:8])
        fraction = clock[9:18] if clock[8:9] == b"." else b""
        if fraction and not fraction.isdigit():
            raise ValueError(f"bad timestamp {text!r}")
        return b"%d.%s0" % (seconds, fraction.ljust(9, b"0"))

    def field_list(record: bytes) -> list[bytes]:
        head, separator, path = record.partition(b" -- ")
        if not separator:
            raise ValueError("no ' -- ' before the path")
        ino, _generation, snapshot, show = head.split(None, 3)
        fields = _unescape(show.strip()).split(b"|")
        if len(fields) != 8:
            raise ValueError(f"SHOW has {len(fields)} fields, expected 8 (see docs/lists.md)")
        uid, size, kb_allocated, nlink, mode, atime, mtime, ctime = fields
        kind = _GPFS_TYPES.get(mode[:1])
        if kind is None:
            raise ValueError(f"unknown MODE {mode!r}")
        return [snapshot, ino, nlink, uid, size, b"%d" % (2 * int(kb_allocated)),
                convert(atime) if wanted[0] else _UNUSED,
                convert(mtime) if wanted[1] else _UNUSED,
                convert(ctime) if wanted[2] else _UNUSED, kind, _unescape(path)]

    return field_list


def _lfs_field_list(basis: str) -> Callable[[bytes], list[bytes]]:
    return _field_list_lfs


# Formats read through a conversion to find's field list, built per run for its
# age basis; find's own records are split inline by the reader (the 10M-record
# case: no call per record).
FIELD_LISTS: dict[str, Callable[[str], Callable[[bytes], list[bytes]]]] = {
    "gpfs": _gpfs_field_list,
    "lfs": _lfs_field_list,
}
