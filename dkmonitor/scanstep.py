"""The scan step of a full run: how one task's target is measured.

By walking it (one process, ``[scan] workers`` processes, or every rank of an
MPI job when the run was started under ``mpirun``/``srun``) or by reading a
site scanner's list (``--from-list``). Every way gives the same ScanResult,
so storing, mail and cleaning never know which was used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dkmonitor.config import Settings
from dkmonitor.scan import scan_tree
from dkmonitor.scan.age import AgeRule
from dkmonitor.scan.stats import ScanOptions, ScanResult
from dkmonitor.taskspec import TaskSpec

if TYPE_CHECKING:
    from dkmonitor.scan.fromlist import ListSource
    from dkmonitor.scan.mpi import ScanPool


def scan_options(settings: Settings, task: TaskSpec, now: float) -> ScanOptions:
    """What the scan of ``task`` needs: its age rule, the [scan] settings,
    dkmonitor's own state and log directories to leave out, and for an
    announcing task where to spool its old files."""
    announces = task.cleans and task.notice_days > 0
    return ScanOptions(
        AgeRule(task.old_file_threshold, now, task.age_basis),
        exclude=settings.scan.exclude,
        one_file_system=settings.scan.one_file_system,
        workers=settings.scan.workers,
        threads_per_rank=settings.scan.threads_per_rank,
        leave_out=(str(settings.state_dir), settings.logging.log_dir),
        candidate_dir=_spool_dir(settings) if announces else None,
    )


def _spool_dir(settings: Settings) -> str | None:
    """Where the walk spools its old files for the announce step (announce/spool.py):
    root's announce directory, or the state directory before the first real run
    made it (a dry run creates nothing: the spools are unnamed files)."""
    for directory in (settings.state_dir / "announce", settings.state_dir):
        if directory.is_dir():
            return str(directory)
    return None


def measure(
    target: str,
    options: ScanOptions,
    progress: Callable[[int, int], None] | None,
    from_list: ListSource | None = None,
    pool: ScanPool | None = None,
) -> ScanResult:
    """Walk ``target``, or read the list given with --from-list; OSError when neither works."""
    if from_list is None:
        return scan_tree(target, options, progress, pool=pool)
    from dkmonitor.scan.fromlist import ListError, scan_list

    try:
        return scan_list(from_list, target, options, progress)
    except ListError as exc:
        raise OSError(str(exc)) from exc
