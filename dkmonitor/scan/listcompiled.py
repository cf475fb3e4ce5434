"""The list reader's compiled fast path (``_listparse.c``), with Python for everything else.

``_listparse.files`` reads the common record -- a plain file with one link, in
the directory and of the owner of the record before it -- and stops at any
other, which fromlist.py's pure-Python loop then reads, one record, exactly as
without the helper. The helper is optional (setup.py builds it when a compiler
is there); ``DKM_LIST_PURE_PYTHON=1`` turns it off (benchmarks, tests).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

from dkmonitor.scan.listformats import PATH, UID
from dkmonitor.scan.stats import AGE_EDGES_NS, SIZE_EDGES
from dkmonitor.scan.tally import NHIST

if TYPE_CHECKING:
    from dkmonitor.scan.fromlist import _Loop

try:
    from dkmonitor.scan import _listparse
except ImportError:  # not built: the pure-Python loop reads every record
    _listparse = None  # type: ignore[assignment]

COMPILED = _listparse is not None
_BASES = {"used": 0, "atime": 1, "mtime": 2, "ctime": 3}
# What the helper is told each format is: find's and lfs's number of fields, or GPFS.
_LAYOUTS = {"find": 11, "lfs": 10, "gpfs": _listparse.GPFS if _listparse is not None else 0}

Slow = Callable[["_Loop", list[bytes]], None]


def _find_fields(record: bytes) -> list[bytes]:
    return record.split(b" ", 10)


def wanted() -> bool:
    """Whether to use the helper: built, and not turned off for this process."""
    return COMPILED and os.environ.get("DKM_LIST_PURE_PYTHON", "") in ("", "0")


class FastFiles:
    """One run's use of the helper: its constants and its accumulator array."""

    def __init__(self, loop: _Loop, list_format: str) -> None:
        assert _listparse is not None
        self.nfields = _LAYOUTS[list_format]
        self.fields = loop.field_list or _find_fields
        self.acc = array("q", bytes(8 * _listparse.ACC_LEN))
        self.hist = _listparse.HIST
        assert _listparse.ACC_LEN == self.hist + NHIST + 1
        self.dev: bytes | None = None
        self.consts = self._consts(loop)

    @staticmethod
    def usable(loop: _Loop, list_format: str) -> bool:
        """Formats it parses, and no path test it cannot do (exclude globs, left-out dirs)."""
        target = loop.target
        return list_format in _LAYOUTS and target.excluded is None and not target.left

    def _consts(self, loop: _Loop) -> tuple[object, ...]:
        target = loop.target
        self.dev = target.dev
        return (target.prefix, target.root, target.dev if target.one_fs else None,
                self.nfields, _BASES[loop.basis], loop.now_ns, loop.old_below,
                loop.young_above, SIZE_EDGES, AGE_EDGES_NS)

    def read_batch(self, loop: _Loop, batch: list[bytes], slow: Slow) -> None:
        """The helper until it stops, then what it stopped for, and the helper again."""
        assert _listparse is not None
        files, acc, status = _listparse.files, self.acc, _listparse.STATUS
        full, new_directory = _listparse.FULL, _listparse.NEW_DIRECTORY
        start, end = 0, len(batch)
        while start < end:
            if loop.target.dev != self.dev:  # the target's own record sets it
                self.consts = self._consts(loop)
            stop = files(batch, start, loop.parent, self.consts, acc)
            if stop > start:
                self._fold_run(loop, batch[start], stop - start)
            if stop == end:
                break
            why = acc[status]
            if why == full:  # a sum could overflow int64: fold, then go on
                self._fold_hist(loop)
            elif why == new_directory:  # a plain file in another directory: open it
                path = self.fields(batch[stop])[PATH]
                loop.enter(path[:path.rindex(b"/")])
            elif why != _listparse.NEW_OWNER or stop == start:
                slow(loop, batch[stop:stop + 1])  # NEW_OWNER: call again, it adopts the new one
                stop += 1
            start = stop
        self._fold_hist(loop)

    def _fold_run(self, loop: _Loop, first: bytes, count: int) -> None:
        """The run's sums (one owner; files of one directory) into the owner's and the
        directory's."""
        acc = self.acc
        uid = self.fields(first)[UID]  # the helper read it: it parses
        counters = loop.by_uid.get(uid)
        if counters is None:
            counters = loop.by_uid[uid] = [0, 0, 0, 0, 0, 0, 0, 0, int(uid)]
        counters[0] += acc[0]
        counters[1] += acc[1]
        counters[2] += acc[2]
        counters[3] += acc[3]
        counters[4] += acc[4]
        counters[5] += acc[5] * 1_000_000_000 + acc[6]
        counters[6] += acc[7]
        counters[7] += acc[8]
        loop.tally.directories += acc[7]
        files, total, old_total = loop.sums
        loop.sums = (files + acc[0], total + acc[1], old_total + acc[4])
        loop.number += count
        for index in range(9):
            acc[index] = 0

    def _fold_hist(self, loop: _Loop) -> None:
        acc, hist, offset = self.acc, loop.tally.hist, self.hist
        for index in range(NHIST):
            hist[index] += acc[offset + index]
            acc[offset + index] = 0
        acc[offset - 1] = 0  # the bytes added since the last fold
