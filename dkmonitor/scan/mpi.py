"""Scanning one target with every rank of an MPI job (``mpirun``/``srun``).

Why ``mpi4py.futures.MPICommExecutor`` and not a work-stealing protocol of our
own: the scan already knows how to split itself. A walker that is told it is
"hungry" hands back the shallowest half of its pending directories (the same
seam the local parallel scan uses, see ``parallel.py``). So each MPI task is
"walk these directories; after ``TASK_SECONDS``, give back the shallowest half
of what is left after every directory", and rank 0 resubmits what comes back.
Futures carry the batches, the partial tallies and any failure; the only
protocol of our own is the master's loop in :func:`walk_over_mpi`, and it
cannot end early or hang: it ends exactly when nothing is pending and no task
is in flight, and every directory is, at every moment, in one of the two.

Per-owner totals are integer :class:`Tally` objects merged on rank 0 (exact,
order-free); hard-linked files travel as ``(st_dev, st_ino)`` keys, so a file
linked from two subtrees walked by two ranks still counts once. Each task's
tally covers only what that task walked, so memory per rank stays flat.

Only rank 0 runs the command (lock, database, mail, cleaning); the other ranks
only ever execute :func:`_walk_task`. Rank 0 walks too, through a helper
process forked before MPI starts (:class:`LocalWalker`): rank 0 itself must
stay free to hand out work (its executor's thread and the hand-out loop
share one interpreter; walking there would slow every other rank's next
batch), and forking before ``MPI_Init`` is the one moment a fork is safe for
every MPI library. So ``-n N`` walks with N processes.

Each of those processes runs ``[scan] threads_per_rank`` walker threads
(threaded.py; default 4) on its batch: the compiled
loop releases Python's lock while it reads and lstats, so a rank keeps that
many requests in flight, which is what a latency-bound file system rewards
(docs/scale.md, "What limits the speed-up").
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from dkmonitor.launch import launch_from
from dkmonitor.scan.parallel import ScanWorkerError, _die_with_parent
from dkmonitor.scan.tally import Tally
from dkmonitor.scan.walker import TICK_SECONDS, Pending, WalkConfig, Walker

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from dkmonitor.announce.spool import Spool

# How long one task walks before it starts giving work back. Short enough that
# idle ranks are fed quickly, long enough that a task is much more than a round
# trip to rank 0.
TASK_SECONDS = 0.05

class JobStopped(ScanWorkerError):
    """The launcher is stopping the job: a rank died, or the job was cancelled."""


def _stop_scan(_signum: int, _frame: object) -> None:
    raise JobStopped("the MPI job is being stopped (a rank died, or the job was cancelled)")


class ScanPool:
    """Rank 0's handle on the other ranks, passed down to :func:`scan_tree`.

    When a rank dies, the launcher (mpirun, srun -K) sends every other rank
    SIGTERM and, a grace period later, SIGKILL. While rank 0 waits on a scan,
    SIGTERM raises :class:`JobStopped` there instead, so the task fails
    cleanly within the grace period: nothing of the scan is stored, the
    administrators are told, the exit status is 1 (the lock is released
    however the process ends). Later scans of the same run fail at once: the
    job has lost a rank.
    """

    def __init__(self, executor: Executor, workers: int,
                 local: LocalWalker | None = None) -> None:
        self.executor = executor
        self.workers = workers  # the other ranks; rank 0's own walker is ``local``
        self.local = local
        self.broken: str | None = None

    def walk(self, config: WalkConfig, progress: Callable[[int, int], None] | None,
             threads: int = 1, spool: Spool | None = None) -> Tally:
        """Walk with every rank, ``threads`` walker threads in each ([scan] threads_per_rank);
        ``spool``: where rank 0 writes the old files the ranks send back
        (``config.spool_in_memory``)."""
        if self.broken is not None:
            raise JobStopped(self.broken)
        previous = signal.signal(signal.SIGTERM, _stop_scan)
        try:
            return walk_over_mpi(config, self.executor, self.workers, progress, self.local,
                                 threads, spool)
        except ScanWorkerError as exc:
            self.broken = str(exc)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def mpi_world() -> Iterator[ScanPool | None]:
    """Join the MPI job: rank 0 gets a :class:`ScanPool`, every other rank ``None``.

    The other ranks serve scan tasks inside ``MPICommExecutor`` until rank 0
    leaves the block (then they get ``None`` and should just exit).
    """
    local = LocalWalker() if launch_from(os.environ).rank == 0 else None
    try:
        from mpi4py import MPI
        from mpi4py.futures import MPICommExecutor

        comm = MPI.COMM_WORLD
        with MPICommExecutor(comm, root=0) as executor:
            if executor is None:
                yield None
            else:
                yield ScanPool(cast(Executor, executor), comm.Get_size() - 1, local)
    finally:
        if local is not None:
            local.close()


def _serve_local(conn: Connection, parent_pid: int) -> None:
    """The body of rank 0's walker process: run each task sent, send back its outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    while True:
        try:
            task = conn.recv()
        except EOFError:  # rank 0 closed its end: done
            return
        func, args = task
        try:
            outcome: tuple[str, Any] = ("ok", func(*args))
        except BaseException as exc:  # report upstream; never print from here
            outcome = ("failed", f"{type(exc).__name__}: {exc}")
        conn.send(outcome)


class LocalWalker:
    """Rank 0's own walker: one process, forked before ``MPI_Init``, fed one task at a time.

    ``submit`` has the shape of ``Executor.submit`` so that rank 0's loop
    treats it as one more slot beside the other ranks. A thread per task
    waits for the answer (blocked in ``recv``, it holds no GIL). If the
    process dies, the task's future fails and so does the scan, cleanly.
    """

    def __init__(self) -> None:
        import multiprocessing  # rank 0 only: the walking ranks need not import it

        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_local, args=(child, os.getpid()),
                                        name="dkmonitor-rank0-walker", daemon=True)
        self._process.start()
        child.close()

    def submit(self, func: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            self._conn.send((func, args))
        except OSError as exc:
            future.set_exception(ScanWorkerError(f"rank 0's walker process is gone: {exc}"))
            return future
        threading.Thread(target=self._answer, args=(future,), daemon=True).start()
        return future

    def _answer(self, future: Future[Any]) -> None:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(timeout=1)  # reap it, for the exit status
            future.set_exception(ScanWorkerError(
                f"rank 0's walker process died (exit status {self._process.exitcode})"))
            return
        if status == "ok":
            future.set_result(value)
        else:
            future.set_exception(ScanWorkerError(str(value)))

    def close(self) -> None:
        """Let the process go (EOF ends it); a process stuck in a walk is killed."""
        self._conn.close()
        self._process.join(timeout=1)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class _AfterDeadline:
    """A walker "hungry" flag that turns on after ``seconds`` and stays on.

    Once on, the walker gives back the shallowest half of its pending
    directories after every directory it walks, and so finishes soon with
    the rest handed back to rank 0.
    """

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    @property
    def value(self) -> int:
        return 1 if time.monotonic() >= self._deadline else 0

    @value.setter
    def value(self, _ignored: int) -> None:
        pass  # the walker resets it after donating: stay on


def _walk_task(
    config: WalkConfig, batch: list[Pending], seconds: float, threads: int = 1
) -> tuple[Tally, list[Pending]]:
    """One MPI task, run on a worker rank: walk ``batch`` with ``threads`` walker
    threads (threaded.py), give back what is left after ``seconds``."""
    views = _DeviceViews(config.root_dev, os.stat(config.root).st_dev)
    if views.differ:
        config = replace(config, root_dev=views.here(config.root_dev), leave_out=frozenset(
            (views.here(dev), ino) for dev, ino in config.leave_out))
        batch = [(path, views.here(dev), ino) for path, dev, ino in batch]
    if threads > 1:
        from dkmonitor.scan.threaded import walk_threads

        tally, given_back = walk_threads(config, batch, seconds, threads)
    else:
        given_back = []
        walker = Walker(config, hungry=_AfterDeadline(seconds), donate=given_back.extend)
        walker.walk(batch)
        tally = walker.tally
    if views.differ:
        views.to_rank0(tally)
        given_back = [(path, views.rank0(dev), ino) for path, dev, ino in given_back]
    return tally, given_back


class _DeviceViews:
    """The target's device number on rank 0's host and on this one.

    Why: every host numbers a mounted filesystem its own way (an NFS, Lustre or
    GPFS client gets an anonymous device number at mount time), while inode
    numbers are the filesystem's. Work handed between ranks carries (device,
    inode) identities, and so do hard-linked files: they travel in rank 0's
    numbering and are used here in this host's. Without this, every directory
    handed to a rank on another host looked replaced and was skipped, and the
    scan counted a fraction of the files. Only the target's own filesystem is
    translated: with ``one_file_system = no``, directories on filesystems
    mounted below it are walked by the rank that meets them, and one handed to
    another host is skipped as replaced (docs/scale.md).
    """

    def __init__(self, rank0: int, here: int) -> None:
        self._rank0 = rank0
        self._here = here
        self.differ = rank0 != here

    def here(self, dev: int) -> int:
        """A device number of rank 0's, as this host numbers it."""
        return self._here if dev == self._rank0 else dev

    def rank0(self, dev: int) -> int:
        """A device number of this host's, as rank 0 numbers it."""
        return self._rank0 if dev == self._here else dev

    def to_rank0(self, tally: Tally) -> None:
        tally.linked = {(self.rank0(dev), ino): linked
                        for (dev, ino), linked in tally.linked.items()}
        tally.left_out = {(self.rank0(dev), ino) for dev, ino in tally.left_out}


Outcome = tuple[Tally, list[Pending]]


def walk_over_mpi(
    config: WalkConfig,
    executor: Executor,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    local: LocalWalker | None = None,
    threads: int = 1,
    spool: Spool | None = None,
) -> Tally:
    """Walk ``config.root`` with ``workers`` ranks (and rank 0's ``local`` walker),
    ``threads`` walker threads in each; the merged tally, on rank 0. The old
    files each task sends back are written to ``spool`` as they come: rank 0
    never holds more than one task's (a task walks ``TASK_SECONDS``)."""
    pending: deque[Pending] = deque([(config.root, config.root_dev, config.root_ino)])
    # every task in flight, with the slot it occupies: "mpi" (a rank) or "local"
    running: dict[Future[Outcome], str] = {}
    total = Tally()
    next_report = time.monotonic()
    while pending or running:
        idle_local = local is not None and "local" not in running.values()
        idle = workers - sum(slot == "mpi" for slot in running.values()) + idle_local
        while pending and idle > 0:
            share = max(1, len(pending) // idle)
            batch = [pending.popleft() for _ in range(min(share, len(pending)))]
            if idle_local:
                assert local is not None
                running[local.submit(_walk_task, config, batch, TASK_SECONDS,
                                             threads)] = "local"
                idle_local = False
            else:
                running[executor.submit(_walk_task, config, batch, TASK_SECONDS,
                                                 threads)] = "mpi"
            idle -= 1
        done, _ = wait(running, timeout=TICK_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            del running[future]
            try:
                tally, given_back = future.result()
            except Exception as exc:  # a walker failed: the scan is incomplete
                for other in running:
                    other.cancel()
                raise ScanWorkerError(f"an MPI scan rank failed: {exc}") from None
            if spool is not None:
                spool.add(tally.candidates)
            tally.candidates = b""
            total.merge(tally)
            pending.extend(given_back)
        if progress is not None and time.monotonic() >= next_report:
            progress(*total.files_and_bytes())
            next_report = time.monotonic() + TICK_SECONDS
    if spool is not None:
        spool.flush()
        total.spool_error = spool.error
    return total
