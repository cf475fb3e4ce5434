"""The last look at a file before it is moved or deleted.

Between selection and action a user may have used the file, rewritten it,
replaced it with a symlink or a FIFO, or hard-linked it elsewhere. The
file is acted on only if it is still exactly the old regular file that was
selected; otherwise the action is skipped with the reason.
"""

from __future__ import annotations

import os
import stat

from dkmonitor.clean.fsops import lstat_at
from dkmonitor.clean.select import Candidate
from dkmonitor.scan.age import AgeRule, is_old

__all__ = ["AgeRule", "recheck"]  # AgeRule is the scanner's own, re-exported for the cleaner


def recheck(
    dir_fd: int, cand: Candidate, rule: AgeRule, *, moving: bool
) -> tuple[os.stat_result | None, str | None]:
    """(fresh lstat, None) when the file may be acted on, else (None, reason)."""
    parent = os.fstat(dir_fd)
    if (parent.st_dev, parent.st_ino) != (cand.parent_dev, cand.parent_ino):
        return None, "its directory was replaced since selection"
    try:
        st = lstat_at(dir_fd, cand.name)
    except FileNotFoundError:
        return None, "vanished since selection"
    if not stat.S_ISREG(st.st_mode):
        return None, "is no longer a regular file"
    if (st.st_dev, st.st_ino) != (cand.dev, cand.ino):
        return None, "was replaced by another file since selection"
    if st.st_size != cand.size or st.st_mtime_ns != cand.mtime_ns:
        return None, "was modified since selection"
    if st.st_uid != cand.uid:
        return None, f"changed owner since selection (uid {cand.uid} -> {st.st_uid})"
    if not is_old(st, rule.now, rule.old_days, rule.basis):
        return None, "was used since selection (no longer old)"
    if moving and st.st_nlink > 1:
        return None, f"has {st.st_nlink} hard links (moving would take an inode shared elsewhere)"
    return st, None
