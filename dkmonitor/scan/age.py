"""How old a file is, by the task's age basis.

Shared by the scanner and the cleaner so that "old" means exactly the same
thing when a file is counted and when it is moved or deleted.
"""

from __future__ import annotations

import os

DAY = 86400.0
AGE_BASES = ("used", "atime", "mtime", "ctime")


def last_use(st: os.stat_result, basis: str = "used") -> float:
    """Epoch seconds of the file's last use.

    ``used`` (the default) is the newer of atime and mtime: a file written
    yesterday is not old even on a filesystem mounted ``noatime``.
    """
    if basis == "used":
        return st.st_atime if st.st_atime > st.st_mtime else st.st_mtime
    if basis == "atime":
        return st.st_atime
    if basis == "mtime":
        return st.st_mtime
    if basis == "ctime":
        return st.st_ctime
    raise ValueError(f"unknown age basis {basis!r}; use one of {', '.join(AGE_BASES)}")


def age_seconds(st: os.stat_result, now: float, basis: str = "used") -> float:
    """Seconds since last use, never negative (clock skew, files from the future)."""
    age = now - last_use(st, basis)
    return age if age > 0.0 else 0.0


def is_old(st: os.stat_result, now: float, old_days: float, basis: str = "used") -> bool:
    """Strictly older than ``old_days`` days."""
    return now - last_use(st, basis) > old_days * DAY
