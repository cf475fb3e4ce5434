"""Several walker threads in one process, sharing one batch of directories.

Why threads: on a latency-bound file system (NFS, Lustre, GPFS) a walker
spends its time waiting for one round trip after another, so the way to go
faster is more requests in flight. The compiled per-directory loop
(``_dirscan.c``) releases Python's lock while it reads and lstats entries, so
``threads`` walkers in one process keep up to ``threads`` requests in flight
for the price of one interpreter. (The pure-Python loop overlaps its
``lstat`` calls too, but fights over the lock for everything else.) Used by
each MPI rank (``mpi.py``); the local scan keeps its processes
(``parallel.py``), where the walk is CPU-bound and threads would only share
one core's worth of Python.

How work is shared: each thread has its own :class:`Walker` (own stack, own
tally, own fds) and takes directories one at a time from a shared queue.
While some thread waits with the queue empty, the others are "hungry" and
hand the shallowest half of their pending directories to the queue (the same
seam the local and MPI scans use). After ``seconds`` every walker is hungry
and its gifts go back to the caller instead (what an MPI task returns to rank
0), and no thread takes new work, so the task ends soon. It ends exactly when
the queue is empty and no thread is walking: every directory is always in
one of the two, or walked, or given back. The tallies are merged at the end
(integers; hard links by ``(st_dev, st_ino)``, so exactly as one walker).

A thread that fails stops the others at their next tick (``TICK_SECONDS``)
and its exception is raised to the caller.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from dkmonitor.scan.dirfds import FD_BUDGET
from dkmonitor.scan.tally import Tally
from dkmonitor.scan.walker import Pending, WalkConfig, Walker


class _Stopped(Exception):
    """Raised in a walker thread (from its tick) when another thread has failed."""


class _Shared:
    """The queue, the given-back list and the counts, under one condition variable."""

    def __init__(self, batch: list[Pending], seconds: float) -> None:
        self.cond = threading.Condition()
        self.pending: deque[Pending] = deque(batch)
        self.given_back: list[Pending] = []
        self.walking = 0  # threads inside Walker.walk
        self.waiting = 0  # threads waiting for the queue to fill
        self.deadline = time.monotonic() + seconds
        self.failure: BaseException | None = None

    def late(self) -> bool:
        return time.monotonic() >= self.deadline

    def donate(self, paths: list[Pending]) -> None:
        with self.cond:
            if self.late():
                self.given_back.extend(paths)
            else:
                self.pending.extend(paths)
                self.cond.notify_all()

    def take(self, first: bool) -> Pending | None:
        """The next directory to walk, or None: done (or too late, or failed).

        A thread's ``first`` directory is handed out however late it is, so
        that every task walks something: no task can give everything back.
        """
        with self.cond:
            while (not self.pending and self.walking and self.failure is None
                   and not self.late()):
                self.waiting += 1
                self.cond.wait(timeout=max(0.0, self.deadline - time.monotonic()))
                self.waiting -= 1
            if not self.pending or self.failure is not None or (self.late() and not first):
                self.cond.notify_all()
                return None
            self.walking += 1
            return self.pending.popleft()

    def walked(self, failure: BaseException | None) -> None:
        with self.cond:
            self.walking -= 1
            if failure is not None and self.failure is None:
                self.failure = failure
            self.cond.notify_all()


class _Hungry:
    """A walker's "hungry" flag: on while another thread waits for work, or past the deadline."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared

    @property
    def value(self) -> int:
        shared = self._shared
        return 1 if (shared.waiting and not shared.pending) or shared.late() else 0

    @value.setter
    def value(self, _ignored: int) -> None:
        pass  # computed, never stored: the walker's reset after donating changes nothing


def _serve(shared: _Shared, walker: Walker) -> None:
    """One thread: walk directories from the queue until it is empty (or too late)."""
    first = True
    while True:
        item = shared.take(first)
        if item is None:
            return
        first = False
        try:
            walker.walk([item])
        except BaseException as exc:  # noqa: BLE001  (handed to the caller)
            shared.walked(exc)
            return
        shared.walked(None)


def walk_threads(
    config: WalkConfig, batch: list[Pending], seconds: float, threads: int
) -> tuple[Tally, list[Pending]]:
    """Walk ``batch`` with ``threads`` walkers; after ``seconds`` give back what is left.

    Returns the merged tally and the directories given back (none when the
    walk finished in time).
    """
    shared = _Shared(batch, seconds)

    def stop_if_failed(_tally: Tally) -> None:
        if shared.failure is not None:
            raise _Stopped("another walker thread failed")

    budget = max(16, FD_BUDGET * 4 // threads)  # at most 512 directory fds in all
    walkers = [Walker(config, on_tick=stop_if_failed, hungry=_Hungry(shared),
                      donate=shared.donate, fd_budget=budget) for _ in range(threads)]
    if threads == 1:
        _serve(shared, walkers[0])
    else:
        pool = [threading.Thread(target=_serve, args=(shared, walker), daemon=True,
                                 name=f"dkmonitor-walker-{index}")
                for index, walker in enumerate(walkers)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    if shared.failure is not None:
        raise shared.failure
    total = Tally()
    for walker in walkers:
        total.merge(walker.tally)
    return total, shared.given_back + list(shared.pending)
