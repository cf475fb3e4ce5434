"""Was this process started as one rank of an MPI job? (read from the launcher's variables)

Kept apart from ``dkmonitor.scan.mpi`` and free of imports: every ``dkmonitor``
command asks it at start-up, and a plain one-process run must pay nothing for
MPI (mpi4py is imported only when there is more than one rank).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

# Environment variables that MPI launchers set in every rank: (size, rank).
_LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),  # Open MPI's mpirun
    ("PMI_SIZE", "PMI_RANK"),  # MPICH / Intel MPI (Hydra), srun --mpi=pmi2
    ("PMIX_SIZE", "PMIX_RANK"),  # srun --mpi=pmix (PMIx sets PMIX_RANK; size varies)
    ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),  # srun, whatever the plugin
)


class Launch(NamedTuple):
    """How this process was started: the job's size and this process's rank.

    A NamedTuple, not a dataclass: ``dkmonitor --help`` asks for it too, and
    building a dataclass (and importing dataclasses) cost more than the rest
    of this module.
    """

    size: int
    rank: int


def launch_from(environ: Mapping[str, str]) -> Launch:
    """The MPI job this process belongs to, read from the launcher's variables.

    Read without importing mpi4py, so that a plain ``dkmonitor`` (one process)
    pays nothing and a missing mpi4py can be reported in one line.
    """
    for size_name, rank_name in _LAUNCHER_VARIABLES:
        size, rank = environ.get(size_name, ""), environ.get(rank_name, "")
        if size.isdigit() and rank.isdigit():
            return Launch(size=int(size), rank=int(rank))
    return Launch(size=1, rank=0)
