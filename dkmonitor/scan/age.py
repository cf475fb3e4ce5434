"""How old a file is, by the task's age basis: one rule for the scanner and the cleaner.

:class:`AgeRule` is the single carrier of (old_days, now, basis): the scan's
options, the walker, the compiled loop (through :attr:`AgeRule.code` and
:attr:`AgeRule.limit_seconds`) and the cleaner's last look before acting all
read it, so that "old" means exactly the same thing when a file is counted and
when it is moved or deleted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dkmonitor.enums import AGE_BASES as AGE_BASES  # declared with the other stored words

DAY = 86400.0


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


@dataclass(frozen=True)
class AgeRule:
    """A file is old when more than ``old_days`` days passed since its last use
    (by ``basis``, one of :data:`AGE_BASES`) at the instant ``now`` (epoch seconds)."""

    old_days: float
    now: float
    basis: str = "used"

    def __post_init__(self) -> None:
        if self.basis not in AGE_BASES:
            raise ValueError(
                f"unknown age basis {self.basis!r}; use one of {', '.join(AGE_BASES)}")

    @property
    def code(self) -> int:
        """The basis as the compiled loop's code (its index in AGE_BASES)."""
        return AGE_BASES.index(self.basis)

    @property
    def limit_seconds(self) -> float:
        """``old_days`` in seconds: old means ``now - last_use > limit_seconds``."""
        return self.old_days * DAY

    def last_use(self, st: os.stat_result) -> float:
        return last_use(st, self.basis)

    def age_seconds(self, st: os.stat_result) -> float:
        return age_seconds(st, self.now, self.basis)

    def is_old(self, st: os.stat_result) -> bool:
        return is_old(st, self.now, self.old_days, self.basis)
