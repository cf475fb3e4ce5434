"""The scan's candidates for the announced purge: every old file, spooled as it is met.

Why: an announcing task needs every old regular file of its target, and the
scan has just looked at every file. Walking the tree a second time cost more
than the scan itself; instead the scan's per-directory loop (the compiled
``_dirscan.scan_dir`` or ``pyloop.scan_python``) appends a packed record for
each old regular file on the target's filesystem to a per-worker buffer,
which the walker writes to an unnamed file (``O_TMPFILE``: nobody else can open
it, and it is gone when closed or when the run is killed) in root's private
announce directory. ``announce.recordfile.build`` then sorts and merges them.

Records (native byte order; ``_recordio.c`` and ``_dirscan.c`` use the same):

* ``D`` a directory: tag, 3 pad bytes, path length u32, st_dev u64, st_ino
  u64, then its path below the target (raw bytes, empty for the target);
* ``F`` a file in the last directory given: tag, pad, name length u16, uid u32,
  gid u32, pad u32, st_ino u64, size i64, mtime_ns i64, last use f64 (epoch
  seconds by the task's age basis), then its name. Its st_dev is the target's.

The candidates are the cleaner's own selection (select.iter_old_files), with
exemptions applied when they are merged: old by the task's age basis, regular,
never behind a symlink, on the target's filesystem, no exclude glob matching,
dkmonitor's state and log directories left out.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from dkmonitor.safefs import make_private_dir, write_all

DIR = struct.Struct("=c3xIQQ")
FILE = struct.Struct("=cxHIIIQqqd")
assert DIR.size == 24 and FILE.size == 48

FLUSH_BYTES = 1 << 20
# unnamed files in root's directory: nobody else can open them, gone when closed
TMPFILE_FLAGS = os.O_TMPFILE | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def spool_dir(state_dir: Path) -> Path:
    """Where spools and sort runs live: root's announce directory (0700)."""
    return state_dir / "announce"


def open_spools(directory: Path, count: int) -> tuple[int, ...]:
    """``count`` unnamed files in ``directory`` (created private if missing)."""
    make_private_dir(directory, tighten=True)
    fds: list[int] = []
    try:
        for _ in range(count):
            fds.append(os.open(directory, TMPFILE_FLAGS, 0o600))
    except OSError:
        close_spools(tuple(fds))
        raise
    return tuple(fds)


def close_spools(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def dir_record(dev: int, ino: int, path: bytes) -> bytes:
    return DIR.pack(b"D", len(path), dev, ino) + path


def file_record(name: bytes, uid: int, gid: int, ino: int, size: int, mtime_ns: int,
                used: float) -> bytes:
    return FILE.pack(b"F", len(name), uid, gid, 0, ino, size, mtime_ns, used) + name


class Spool:
    """One walker's buffer of candidate records and the file it is written to.

    ``fd`` None: the records stay in the buffer, to be taken with the walk's
    results (an MPI rank's: rank 0 writes them to its own spool, walk_over_mpi).
    """

    def __init__(self, fd: int | None, root: str) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self._root_len = len(os.fsencode(root.rstrip("/"))) + 1
        self.error = ""  # why spooling stopped (the scan goes on: its figures still count)

    def directory(self, path: str, dev: int, ino: int) -> bytes:
        """The ``D`` record of the directory at absolute ``path`` (the walker's)."""
        below = os.fsencode(path)[self._root_len:]
        return dir_record(dev, ino, below)

    def maybe_flush(self) -> None:
        if len(self.buffer) >= FLUSH_BYTES and self.fd is not None:
            self.flush()

    def add(self, records: bytes) -> None:
        """Records spooled elsewhere (an MPI rank's), written out like this walker's."""
        self.buffer += records
        self.maybe_flush()

    def take(self) -> bytes:
        """The records buffered so far (a spool without a file), and an empty buffer."""
        taken = bytes(self.buffer)
        del self.buffer[:]
        return taken

    def flush(self) -> None:
        """Write the buffer out. A failure (root's state directory full, say) stops the
        spooling, not the scan: the file is emptied to give its space back, the
        reason kept for the announce step, which then announces nothing this run."""
        if not self.error and self.fd is not None:
            try:
                write_all(self.fd, self.buffer)
            except OSError as exc:
                self.error = exc.strerror or str(exc)
                with suppress(OSError):
                    os.ftruncate(self.fd, 0)
        del self.buffer[:]


def read_spool(fd: int) -> Iterator[tuple[int, int, bytes, tuple[int, ...], bytes, float]]:
    """Every file of a spool as (dir dev, dir ino, dir path, (uid, gid, ino, size, mtime_ns),
    name, used): the reference reader (tests, and build without the compiled module)."""
    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(fd), "rb") as stream:
        data = stream.read()
    at = 0
    current: tuple[int, int, bytes] | None = None
    while at < len(data):
        tag = data[at:at + 1]
        if tag == b"D":
            _tag, length, dev, ino = DIR.unpack_from(data, at)
            at += DIR.size
            current = (dev, ino, data[at:at + length])
            at += length
        elif tag == b"F" and current is not None:
            _tag, length, uid, gid, _pad, ino, size, mtime_ns, used = FILE.unpack_from(data, at)
            at += FILE.size
            yield (*current, (uid, gid, ino, size, mtime_ns), data[at:at + length], used)
            at += length
        else:
            raise ValueError(f"candidate spool: bad record at byte {at}")
