"""Disk-level facts about a target: use percent as df shows it, mount options."""

from __future__ import annotations

import os
from dataclasses import dataclass

from dkmonitor.records import FrozenRecord


@dataclass(frozen=True, repr=False, eq=False)  # repr, ==, hash: dkmonitor.records
class DiskUsage(FrozenRecord):
    total: int
    used: int
    available: int

    @property
    def percent(self) -> float:
        """used / (used + available) * 100, exactly as df computes it.

        Reserved blocks (root's 5% on ext4) are neither used nor available,
        which is why this is not used / total.
        """
        denominator = self.used + self.available
        return self.used / denominator * 100.0 if denominator else 0.0


def disk_usage(path: str) -> DiskUsage:
    """statvfs of the filesystem holding ``path``; raises OSError if it is missing."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return DiskUsage(total=total, used=used, available=available)


def mount_point_of(path: str) -> str:
    """The mount point holding ``path`` (walks up while st_dev stays the same)."""
    path = os.path.realpath(path)
    dev = os.stat(path).st_dev
    while path != "/":
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != dev:
            return path
        path = parent
    return path


def mount_options(path: str, mounts_file: str = "/proc/self/mounts") -> frozenset[str]:
    """Options of the filesystem holding ``path`` (empty when unknown)."""
    try:
        mount_point = mount_point_of(path)
        with open(mounts_file, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return frozenset()
    found: frozenset[str] = frozenset()
    for line in lines:  # the last matching line wins: later mounts hide earlier ones
        fields = line.split()
        if len(fields) >= 4 and _unescape(fields[1]) == mount_point:
            found = frozenset(fields[3].split(","))
    return found


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    return (
        field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
        .replace("\\134", "\\")
    )
