"""Several worker processes walking one tree, with directories handed out on demand.

Why processes: the walk is CPU-bound in the interpreter locally (threads only
fight over the GIL) and latency-bound on network filesystems (NFS, Lustre),
where many workers each waiting on their own round trip is the whole gain.

How work is split: the parent owns a queue of directory paths and starts with
just the root. Each worker walks what it is given depth-first; whenever the
parent has an idle worker and nothing queued it raises a shared "hungry" flag,
and the next worker to notice it (checked once per directory) donates the
shallowest half of its pending directories. So a single huge subtree, at any
depth, is shared out, and nobody waits while work remains. Workers return
integer per-owner tallies once, at the end; hard-linked files travel as
``(st_dev, st_ino)`` keys so that the merge counts each inode once.

Workers are forked (cheap to start, nothing to pickle at start), ignore SIGINT
(the parent handles Ctrl-C and terminates them), die with the parent
(``PR_SET_PDEATHSIG``, and EOF on their pipe) and never print: any failure is
sent to the parent, which raises :class:`ScanWorkerError`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from dkmonitor.scan.tally import Tally
from dkmonitor.scan.walker import TICK_SECONDS, Pending, WalkConfig, Walker

if TYPE_CHECKING:  # imported where used: an MPI rank needs this module's error and
    # _die_with_parent, not multiprocessing (~20 ms of every rank's start-up)
    import multiprocessing
    from multiprocessing.connection import Connection

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_SECONDS = 2.0


class ScanWorkerError(OSError):
    """A worker process failed or was killed (OOM killer, admin): the scan is incomplete.

    An ``OSError`` so that the runner's existing "scanning TARGET: reason"
    handling fails the task cleanly instead of dying with a traceback.
    """


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this worker when the parent goes (Linux only)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: EOF on the task pipe still ends the worker
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(
    index: int,
    conn: Connection,
    foreign_ends: list[Connection],
    config: WalkConfig,
    hungry: Any,
    counters: Any,
    parent_pid: int,
) -> None:
    """Loop: receive a batch of directories, walk it, say done; send the tally on stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for end in foreign_ends:  # so that EOF reaches us when the parent dies
        end.close()
    _die_with_parent(parent_pid)
    try:

        def on_tick(tally: Tally) -> None:
            files, size = tally.files_and_bytes()
            counters[2 * index] = files
            counters[2 * index + 1] = size

        def donate(paths: list[Pending]) -> None:
            conn.send(("more", paths))

        spool = config.spools[index] if config.spools else None
        walker = Walker(config, on_tick=on_tick, hungry=hungry, donate=donate, spool=spool)
        while True:
            batch = conn.recv()
            if batch is None:
                break
            walker.walk(batch)
            conn.send(("done", None))
        conn.send(("tally", walker.tally))
    except BaseException as exc:  # never print from a worker: report upstream
        try:
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass


class _Pool:
    """The worker processes and their pipes; the parent's side of the protocol."""

    def __init__(self, config: WalkConfig, workers: int) -> None:
        import multiprocessing
        from multiprocessing.sharedctypes import RawArray, RawValue

        context = multiprocessing.get_context("fork")
        self.hungry = RawValue("i", 0)
        self.counters = RawArray("q", 2 * workers)
        self.conns: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        child_ends: list[Connection] = []
        for _ in range(workers):
            mine, theirs = context.Pipe(duplex=True)
            self.conns.append(mine)
            child_ends.append(theirs)
        try:
            for index in range(workers):
                process = context.Process(
                    target=_worker_main,
                    name=f"dkmonitor-scan-{index}",
                    args=(index, child_ends[index], self.conns, config, self.hungry,
                          self.counters, os.getpid()),
                    daemon=True,
                )
                process.start()
                self.processes.append(process)
        finally:
            for end in child_ends:
                end.close()

    def progress(self) -> tuple[int, int]:
        values = list(self.counters)
        return sum(values[0::2]), sum(values[1::2])

    def stop(self) -> None:
        """Terminate whatever is still running; safe to call twice."""
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(_STOP_GRACE_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self.conns:
            conn.close()


def _receive(conn: Connection) -> tuple[str, Any]:
    try:
        message: tuple[str, Any] = conn.recv()
        return message
    except (EOFError, OSError) as exc:
        raise ScanWorkerError("a scan worker died unexpectedly") from exc


def walk_in_parallel(
    config: WalkConfig, workers: int, progress: Callable[[int, int], None] | None = None
) -> Tally:
    pool = _Pool(config, workers)
    try:
        tally = _distribute(pool, config, progress)
    except BaseException:
        for process in pool.processes:  # Ctrl-C or a failure: do not wait for them
            process.terminate()
        pool.stop()
        raise
    pool.stop()
    return tally


def _distribute(
    pool: _Pool, config: WalkConfig, progress: Callable[[int, int], None] | None
) -> Tally:
    from multiprocessing.connection import Connection, wait

    pending: deque[Pending] = deque([(config.root, config.root_dev, config.root_ino)])
    idle = list(range(len(pool.conns)))
    busy = {conn: index for index, conn in enumerate(pool.conns)}
    next_report = time.monotonic()  # report (0, 0) at once: the display starts at the start
    while True:
        while idle and pending:
            pool.conns[idle.pop()].send([pending.popleft()])
        if not pending and len(idle) == len(pool.conns):
            break
        pool.hungry.value = 1 if idle and not pending else 0
        for ready in wait(pool.conns, timeout=TICK_SECONDS):
            conn = cast(Connection, ready)  # wait() returns the objects it was given
            kind, payload = _receive(conn)
            if kind == "more":
                pending.extend(payload)
            elif kind == "done":
                idle.append(busy[conn])
            else:
                raise ScanWorkerError(f"scan worker failed: {payload}")
        if progress is not None and time.monotonic() >= next_report:
            progress(*pool.progress())
            next_report = time.monotonic() + TICK_SECONDS
    pool.hungry.value = 0

    total = Tally()
    for conn in pool.conns:
        conn.send(None)
    for conn in pool.conns:
        kind, payload = _receive(conn)
        if kind != "tally":
            raise ScanWorkerError(f"scan worker failed: {payload}")
        total.merge(payload)
    return total
