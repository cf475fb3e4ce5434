"""Is the relocation path the target, or inside it, by another way in?

``taskspec.relocation_conflict`` compares resolved path strings. A bind mount
defeats that: ``/archive`` may be a bind mount of ``/scratch`` (then every
"move" lands inside the target) or of a directory inside it. Here the
directories themselves are compared, by device and inode:

- the relocation root *is* the target directory;
- walking up from the relocation path with ``..`` (which crosses mounts the
  way the kernel does) meets the target, or walking up from the target meets
  the relocation path;
- both are on one filesystem and, per /proc/self/mountinfo, the relocation
  path's place *in that filesystem* lies under the target's (a bind mount of a
  subdirectory); the candidate directory is then found from the target by
  walking down, and compared by device and inode.
"""

from __future__ import annotations

import os
from pathlib import Path

from dkmonitor.clean.fsops import DIR_FLAGS, Unsafe, open_chain

Ident = tuple[int, int]


def bind_conflict(
    target: str, relocation: str, mountinfo: str = "/proc/self/mountinfo"
) -> str | None:
    """A sentence saying how the relocation path overlaps the target, else None."""
    t, r = os.stat(target), os.stat(relocation)
    if (t.st_dev, t.st_ino) == (r.st_dev, r.st_ino):
        return "is the target itself (the same directory, through another mount or name)"
    if t.st_dev != r.st_dev:
        return None
    if _meets(relocation, (t.st_dev, t.st_ino)):
        return "lies inside the target (found walking up from it)"
    if _meets(target, (r.st_dev, r.st_ino)):
        return "contains the target (found walking up from the target)"
    places = _fs_place(target, mountinfo), _fs_place(relocation, mountinfo)
    if places[0] is None or places[1] is None or places[0][0] != places[1][0]:
        return None
    t_place, r_place = places[0][1].rstrip("/"), places[1][1].rstrip("/")
    if not r_place.startswith(t_place + "/"):
        return None
    parts = r_place[len(t_place) + 1:].split("/")
    if _found_below(target, parts, (r.st_dev, r.st_ino)):
        return "lies inside the target (a bind mount of a directory in it)"
    return None


def _meets(path: str, ident: Ident) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == ident:
                return True
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            pst = os.fstat(parent)
            os.close(fd)
            fd = parent
            if (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
                return False  # the root: its .. is itself
    finally:
        os.close(fd)


def _found_below(target: str, parts: list[str], ident: Ident) -> bool:
    root = os.open(target, DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        fd, _ = open_chain(root, parts)
    except (OSError, Unsafe):
        return False
    finally:
        os.close(root)
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == ident
    finally:
        os.close(fd)


def _fs_place(path: str, mountinfo: str) -> tuple[str, str] | None:
    """(device field, path inside that filesystem) of ``path``, from mountinfo."""
    real = os.path.realpath(path)
    best: tuple[str, str, str] | None = None  # mount point, device, root
    try:
        lines = Path(mountinfo).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    for line in lines.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        device, root, point = fields[2], _unescape(fields[3]), _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, device, root)
    if best is None:
        return None
    point, device, root = best
    rest = real[len(point.rstrip("/")):]
    return device, (root.rstrip("/") + rest) or "/"


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 0 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
