"""Deleting one re-checked file.

unlinkat(2) on the last component, relative to a directory fd reached
without following any symlink, removes exactly one name in exactly that
directory: a symlink planted there is removed itself (its target is never
touched), and no path is resolved again after the check.
"""

from __future__ import annotations

import os

from dkmonitor.clean.select import Candidate


def delete_file(dir_fd: int, cand: Candidate) -> None:
    """Remove ``cand.name`` from the directory open as ``dir_fd``; OSError on failure."""
    os.unlink(cand.name, dir_fd=dir_fd)
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the unlink stands
