"""Start-up cost of whole dkmonitor processes: `--help`, `run quick`, and `run path` vs find.

Each case's commands are run in turn, round after round (A B A B ...), so a
machine whose speed drifts (other work, frequency scaling) slows them alike;
every figure is printed as median [min-max] over the rounds, wall time and
CPU time (user + system of the process and its children), and ratios are
taken round by round. The load average is printed at the start and the end:
on a busy machine trust the ratios and the CPU times more than the wall times.

* ``help``: ``dkmonitor --help``.
* ``quick``: ``dkmonitor -q run quick q1``, a task on the tree below its warning
  threshold (a statvfs, a row stored): what cron starts every hour.
* ``path``: ``dkmonitor -q run path TREE --old-days 90`` next to
  ``find TREE -printf '%s %A@ %U\\n'``, the yardstick of bench/README.md.

``--vs OTHER`` adds a second dkmonitor executable to every case (say, one
installed from the previous commit into its own venv) for a before/after in
one session; ratios then read "dkmonitor/vs". Both use one throw-away
settings file and SQLite database, so they must agree on the schema head.

The children run without PYTHONDONTWRITEBYTECODE: an installed dkmonitor has
its modules compiled, and compiling them at every start (an editable
checkout under that variable) costs more than most of what is measured here.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkout import dkmonitor_python
from scan_vs_find import FIND_FORMAT, ensure_tree


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one whole process (its children's CPU included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def spread(values: list[float], unit: str = " s") -> str:
    return (f"{statistics.median(values):.3f}{unit} "
            f"[{min(values):.3f}-{max(values):.3f}]")


def run_case(name: str, commands: dict[str, list[str]], runs: int,
             env: dict[str, str]) -> None:
    """Warm each command up once, then ``runs`` rounds of all of them in turn."""
    for command in commands.values():
        timed(command, env)
    walls: dict[str, list[float]] = {label: [] for label in commands}
    cpus: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            wall, cpu = timed(command, env)
            walls[label].append(wall)
            cpus[label].append(cpu)
    print(f"{name}: {runs} rounds, load {os.getloadavg()[0]:.2f} after")
    for label in commands:
        print(f"  {label:10s} wall {spread(walls[label])}   cpu {spread(cpus[label])}")
    labels = list(commands)
    for i, first in enumerate(labels):
        for second in labels[i + 1:]:
            ratios = [a / b for a, b in zip(walls[second], walls[first], strict=True)]
            print(f"  {second}/{first}: wall ratio {spread(ratios, 'x')} (round by round)")


def settings_file(scratch: Path) -> Path:
    config = scratch / "settings.cfg"
    config.write_text(
        f"[general]\nstate_dir = {scratch}/state\n"
        f"[database]\nurl = sqlite:///{scratch}/bench.db\n"
        f"[scan]\nworkers = {os.cpu_count() or 1}\none_file_system = yes\n"
        f"[logging]\nlog_dir = {scratch}/log\n"
    )
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--files", type=int, default=100_000, help="tree size for run path")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dkm-bench"))
    parser.add_argument("--dkmonitor", default=str(Path(dkmonitor_python()).parent / "dkmonitor"),
                        help="the dkmonitor executable to time (default: the checkout's .venv)")
    parser.add_argument("--vs", metavar="OTHER", help="a second dkmonitor executable")
    parser.add_argument("--cases", default="help,quick,path")
    args = parser.parse_args(argv)
    if shutil.which("find") is None:
        sys.exit("GNU find is needed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # --vs first, so that the ratios read "dkmonitor over the other"
    ours = {**({"vs": args.vs} if args.vs else {}), "dkmonitor": args.dkmonitor}
    root = ensure_tree(args.work_dir, args.files)
    print(f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f} at the start; "
          f"tree {root}; commands alternated round by round")
    with tempfile.TemporaryDirectory(prefix="startup-", dir=args.work_dir) as scratch:
        config = settings_file(Path(scratch))
        subprocess.run([args.dkmonitor, "--config", str(config), "-q", "task", "create", "q1",
                        "--target", str(root), "--warning", "99", "--critical", "100",
                        "--old-days", "90"], check=True, env=env, stdout=subprocess.DEVNULL)
        cases = {
            "help": {label: [exe, "--help"] for label, exe in ours.items()},
            "quick": {label: [exe, "--config", str(config), "-q", "run", "quick", "q1"]
                      for label, exe in ours.items()},
            "path": {"find": ["find", str(root), "-printf", FIND_FORMAT],
                     **{label: [exe, "--config", str(config), "-q", "run", "path", str(root),
                                "--old-days", "90"] for label, exe in ours.items()}},
        }
        for name in args.cases.split(","):
            run_case(name, cases[name], args.runs, env)


if __name__ == "__main__":
    main()
