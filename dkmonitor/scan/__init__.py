"""Walking a target and totalling its files per owner (pure: no DB, no mail).

The runner calls :func:`scan_tree`; everything else in this package is detail.

The walker and the worker pool (multiprocessing, ctypes) are imported when a
scan starts, not with the package: every ``dkmonitor.scan.*`` import runs this
file first, and ``run quick``, ``view`` and the option parsing of every command
(``dkmonitor.scan.age``) need none of them; they were a fifth of ``run quick``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dkmonitor.scan.mpi import ScanPool
    from dkmonitor.scan.parallel import ScanWorkerError
    from dkmonitor.scan.stats import ScanOptions, ScanResult, Usage
    from dkmonitor.scan.tally import Tally
    from dkmonitor.scan.walker import WalkConfig

__all__ = ["ScanOptions", "ScanResult", "ScanWorkerError", "Usage", "scan_tree"]

Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)


def __getattr__(name: str) -> object:
    """``ScanWorkerError`` (with the worker pool) and the stats types, on first use.

    ``run quick`` imports this package for ``scan.disk`` and needs neither.
    """
    if name == "ScanWorkerError":
        from dkmonitor.scan.parallel import ScanWorkerError

        return ScanWorkerError
    if name in ("ScanOptions", "ScanResult", "Usage"):
        from dkmonitor.scan import stats

        return getattr(stats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SLOWER = "pure Python (slower: install gcc and python3-dev, then reinstall dkmonitor)"

# The optional compiled loops setup.py builds when it can, by what they speed up.
COMPILED_PARTS = (
    ("scanner", "dkmonitor.scan._dirscan"),
    ("list reader", "dkmonitor.scan._listparse"),
    ("announce record", "dkmonitor.announce._recordio"),
)


def scanner_kind() -> str:
    """Which per-entry loop scans run with."""
    from dkmonitor.scan.walker import COMPILED

    return "compiled" if COMPILED else _SLOWER


def compiled_parts() -> list[tuple[str, str]]:
    """(part, "compiled" or why not) for each optional loop: ``dkmonitor --version``."""
    from importlib.util import find_spec

    return [(part, "compiled" if find_spec(module) is not None else _SLOWER)
            for part, module in COMPILED_PARTS]


def scan_tree(
    root: str,
    options: ScanOptions,
    progress: Progress | None = None,
    pool: ScanPool | None = None,
) -> ScanResult:
    """Full scan of ``root``: per-owner files, bytes, allocation, old files, mean age,
    inodes and directories; per-target histograms and top directories (stats.py).

    A missing root or one that is not a directory raises the ``OSError`` (the
    runner reports "target missing"); a parallel worker that dies raises
    :class:`ScanWorkerError` (an ``OSError`` too); trouble *inside* the tree (unreadable
    directories, files vanishing mid-scan) is counted in ``result.errors``.
    The root itself may be a symlink (to where the scratch disk is mounted);
    nothing below it is followed. ``progress(files, bytes)`` gets cumulative
    figures a few times a second, always from the calling process.
    Directories in ``options.leave_out`` (other than ``root`` itself) are not
    walked; ``result.left_out`` names those met. With a ``pool`` (rank 0 of an
    MPI job) every other rank walks too, and ``options.workers`` is not used.
    """
    from dkmonitor.scan.walker import WalkConfig

    root = os.path.abspath(os.fsdecode(root))
    root_stat = os.stat(root)
    if not stat.S_ISDIR(root_stat.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), root)
    leave_out = _identities(options.leave_out)
    leave_out.pop((root_stat.st_dev, root_stat.st_ino), None)  # asked for: scanned
    spools: tuple[int, ...] = ()
    # The walk spools its old files for the announce step, which walks for them
    # itself when it could not: a walk that crosses filesystems (the cleaner
    # never does, so neither may its list). MPI ranks send theirs to rank 0
    # with their results, and rank 0 spools them.
    if options.candidate_dir is not None and options.one_file_system:
        from dkmonitor.announce.spool import open_spools

        spools = open_spools(Path(options.candidate_dir),
                             1 if pool is not None else max(1, options.workers))
    config = WalkConfig.build(root, root_stat.st_dev, options, root_stat.st_ino,
                              frozenset(leave_out), () if pool is not None else spools,
                              spool_in_memory=pool is not None and bool(spools))
    try:
        tally = _walk(config, options, progress, pool, spools)
    except BaseException:
        for fd in spools:
            os.close(fd)
        raise
    result = tally.to_result(root)
    result.candidates = spools
    if result.candidates_error:  # unusable: give their space back before anything is stored
        for fd in spools:
            os.ftruncate(fd, 0)
        result.candidates_error = (f"cannot spool the old files in {options.candidate_dir}: "
                                   f"{result.candidates_error}")
    result.left_out = tuple(path for key, path in leave_out.items() if key in tally.left_out)
    if progress is not None:
        total = result.total
        progress(total.files, total.bytes)
    return result


def _walk(config: WalkConfig, options: ScanOptions, progress: Progress | None,
          pool: ScanPool | None, spools: tuple[int, ...]) -> Tally:
    from dkmonitor.scan.walker import walk_in_process

    if pool is not None:
        log.debug("scanning %s: %d MPI rank(s), %d walker threads each, scanner %s",
                  config.root, pool.workers, options.threads_per_rank, scanner_kind())
        spool = None
        if spools:
            from dkmonitor.announce.spool import Spool

            spool = Spool(spools[0], config.root)
        return pool.walk(config, progress, options.threads_per_rank, spool)
    if options.workers > 1:
        from dkmonitor.scan.parallel import walk_in_parallel

        log.debug("scanning %s: %d workers, scanner %s", config.root, options.workers,
                  scanner_kind())
        return walk_in_parallel(config, options.workers, progress)
    log.debug("scanning %s: 1 worker, scanner %s", config.root, scanner_kind())
    return walk_in_process(config, progress)


def _identities(paths: tuple[str, ...]) -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) of each directory to leave out; missing ones are no concern."""
    found: dict[tuple[int, int], str] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            found.setdefault((st.st_dev, st.st_ino), path)
    return found
