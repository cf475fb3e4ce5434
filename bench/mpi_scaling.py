"""MPI scan scaling on a latency-bound filesystem: ranks 1/2/4/8/16 against GNU find.

    .venv/bin/python bench/mpi_scaling.py [--files 20800] [--lat-us 500] [--runs 3]
                                          [--ranks 1,2,4,8,16] [--threads 4]
                                          [--floor] [--btl self,vader]

Needs root, Debian's fuse3, libfuse3-dev, gcc, openmpi-bin and dkmonitor[mpi].
Builds a tree under /tmp/dkm-bench/mpi-src-FILES (52 files per directory,
20 directories per top directory, several owners), compiles latfs.c (a FUSE
passthrough that sleeps ``--lat-us`` per metadata request, the stand-in for
NFS/Lustre round trips; from bench/ or the shared folder beside the checkout)
and, for each command, mounts it fresh (latfs caches entries for an hour, so
every run is a cold walk), runs, unmounts.

Prints, per command, min/median/max wall seconds, the median's ratio to find's
and to one rank's, dkmonitor's median walk alone (from its debug log: the
"scanning" line to the result line; the rest is starting and ending the
job), how many requests latfs served (all commands must make the
same number: same work) and the most it served at once, and the load average
at the start of the command's runs. Then the start-up alone: ``mpirun -n N
dkmonitor --version``. With ``--floor``, also N threads of one Python process
listing and lstat'ing the tree's leaf directories with nothing else to do: what
N requests in flight get from this file system on this machine, the bound no
N-process scan can beat. ``--btl`` passes Open MPI's ``btl`` (transports),
e.g. ``self,vader`` on one node (default: Open MPI's own choice).
``--threads`` sets ``[scan] threads_per_rank`` (walker threads per rank) for the
MPI commands, one row per value (e.g. ``--threads 1,2,4,8``); without it the
ranks run dkmonitor's default.
"""

from __future__ import annotations

import argparse
import datetime
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = Path("/tmp/dkm-bench")
DKMONITOR = str(Path(sys.executable).parent / "dkmonitor")
PER_DIR = 52
PER_TOP = 20


def build_tree(root: Path, files: int) -> None:
    stamp = root / ".complete"
    if stamp.exists() and stamp.read_text() == str(files):
        return
    shutil.rmtree(root, ignore_errors=True)
    directories = max(1, files // PER_DIR)
    for number in range(directories):
        directory = root / f"a{number // PER_TOP}" / f"b{number % PER_TOP}"
        directory.mkdir(parents=True)
        for index in range(PER_DIR):
            path = directory / f"f{index}"
            path.write_bytes(b"x" * (index * 10))
            os.chown(path, 1000 + index % 7, 0)
    stamp.write_text(str(files))


def latfs_binary(work: Path) -> Path:
    for source in (HERE / "latfs.c", HERE.parents[1] / "shared" / "bench" / "latfs.c"):
        if source.exists():
            break
    else:
        sys.exit("mpi_scaling: latfs.c not found in bench/ or ../shared/bench/")
    flags = subprocess.run(["pkg-config", "fuse3", "--cflags", "--libs"], check=True,
                           capture_output=True, text=True).stdout.split()
    binary = work / "latfs"
    subprocess.run(["gcc", "-O2", "-Wall", str(source), *flags, "-o", str(binary)], check=True)
    return binary


def read_counts(path: Path) -> dict[str, int]:
    """latfs writes its counts when the unmounted daemon exits, just after fusermount3."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}
        time.sleep(0.05)
    return {}


def timed_cold(latfs: Path, src: Path, work: Path, lat_us: int,
               command: list[str]) -> tuple[float, dict[str, int]]:
    mnt, counts = work / "mnt", work / "counts"
    counts.unlink(missing_ok=True)
    subprocess.run([str(latfs), str(src), str(mnt), "-o", "ro,max_threads=64",
                    "-o", f"lat_us={lat_us}", "-o", f"counts={counts}"], check=True)
    try:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
    return elapsed, read_counts(counts)


def threads_walk(root: str, threads: int) -> None:
    """The floor: ``threads`` threads list and lstat the leaf directories (os.lstat
    releases the GIL, so ``threads`` requests are in flight), nothing else."""
    leaves: queue.SimpleQueue[str] = queue.SimpleQueue()
    for top in os.scandir(root):
        if top.is_dir(follow_symlinks=False):
            for leaf in os.scandir(top.path):
                leaves.put(leaf.path)

    def work() -> None:
        while True:
            try:
                leaf = leaves.get_nowait()
            except queue.Empty:
                return
            with os.scandir(leaf) as entries:
                for entry in entries:
                    entry.stat(follow_symlinks=False)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def walk_seconds(log: Path) -> float | None:
    """The last scan's walk, from dkmonitor's log: its "scanning" line to its result line."""
    if not log.exists():
        return None
    stamps: dict[str, datetime.datetime] = {}
    for line in log.read_text().splitlines():
        kind = "start" if ": scanning " in line else "end" if " files, " in line else None
        if kind:
            stamps[kind] = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    if "start" not in stamps or "end" not in stamps:
        return None
    return (stamps["end"] - stamps["start"]).total_seconds()


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def commands_for(args: argparse.Namespace, mnt: Path, config: Path,
                 env_mpi: list[str]) -> dict[str, list[str]]:
    run = [DKMONITOR, "--config", str(config), "run", "path", str(mnt), "--dry-run"]
    commands = {"find": ["find", str(mnt), "-printf", "%s %U %A@ %T@\n"]}
    for ranks in args.rank_list:
        if ranks == 1:
            commands["1 rank"] = run
            continue
        for threads in args.thread_list:  # every rank walks (rank 0 through a helper process)
            name = f"{ranks} ranks" + (f" x{threads}" if threads else "")
            threaded = run
            if threads:  # the same settings, and [scan] threads_per_rank
                with_threads = config.with_name(f"settings-{threads}.cfg")
                with_threads.write_text(config.read_text().replace(
                    "[scan]\n", f"[scan]\nthreads_per_rank = {threads}\n"))
                with_threads.chmod(0o600)
                threaded = [DKMONITOR, "--config", str(with_threads), *run[3:]]
            commands[name] = [*env_mpi, "mpirun", "-n", str(ranks), *threaded]
    if args.floor:
        for ranks in args.rank_list:
            commands[f"{ranks} threads"] = [sys.executable, __file__, "--threads-walk",
                                            str(ranks), str(mnt)]
    return commands


def startup(env_mpi: list[str], ranks: list[int], runs: int) -> None:
    print("start-up alone: mpirun -n N dkmonitor --version")
    for count in (r for r in ranks if r > 1):
        times, loads = [], []
        for _ in range(runs):
            loads.append(load())
            started = time.perf_counter()
            subprocess.run([*env_mpi, "mpirun", "-n", str(count), DKMONITOR, "--version"],
                           check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
        print(f"{count:>3} ranks {min(times):6.2f} {statistics.median(times):6.2f} "
              f"{max(times):6.2f} s  load {'/'.join(loads)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_800)
    parser.add_argument("--lat-us", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ranks", default="1,2,4,8,16")
    parser.add_argument("--threads", default="",
                        help="walker threads per rank, e.g. 1,4,8 (default: dkmonitor's)")
    parser.add_argument("--floor", action="store_true", help="also N threads, no MPI")
    parser.add_argument("--btl", default="", help="Open MPI transports, e.g. self,vader")
    parser.add_argument("--threads-walk", type=int, help=argparse.SUPPRESS)
    parser.add_argument("root", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads_walk:
        threads_walk(args.root, args.threads_walk)
        return
    if os.geteuid() != 0:
        sys.exit("mpi_scaling: run as root (FUSE mount, files owned by several uids)")
    args.rank_list = [int(r) for r in args.ranks.split(",")]
    args.thread_list = [int(t) for t in args.threads.split(",")] if args.threads else [0]
    src = BASE / f"mpi-src-{args.files}"
    build_tree(src, args.files)
    env_mpi = ["env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
               "OMPI_MCA_rmaps_base_oversubscribe=1"]
    if args.btl:
        env_mpi.append(f"OMPI_MCA_btl={args.btl}")
    with tempfile.TemporaryDirectory(prefix="dkm-mpi-bench.") as tmp:
        work = Path(tmp)
        (work / "mnt").mkdir()
        (work / "state").mkdir()
        config = work / "settings.cfg"
        config.write_text(f"[general]\nstate_dir = {work / 'state'}\n\n"
                          f"[database]\nurl = sqlite:///{work / 'state' / 'db.sqlite'}\n\n"
                          "[scan]\nworkers = 1\n\n[logging]\nlevel = DEBUG\n")
        config.chmod(0o600)
        latfs = latfs_binary(work)
        commands = commands_for(args, work / "mnt", config, env_mpi)
        times: dict[str, list[float]] = {name: [] for name in commands}
        counts: dict[str, dict[str, int]] = {}
        loads: dict[str, list[str]] = {name: [] for name in commands}
        walks: dict[str, list[float]] = {name: [] for name in commands}
        log = work / "state" / "log" / "dkmonitor.log"
        for _ in range(args.runs):  # interleaved, so drift hits every command alike
            for name, command in commands.items():
                loads[name].append(load())
                log.unlink(missing_ok=True)
                elapsed, counts[name] = timed_cold(latfs, src, work, args.lat_us, command)
                times[name].append(elapsed)
                walk = walk_seconds(log)
                if walk is not None:
                    walks[name].append(walk)
    report(args, times, counts, loads, walks)
    startup(env_mpi, args.rank_list, args.runs)


def report(args: argparse.Namespace, times: dict[str, list[float]],
           counts: dict[str, dict[str, int]], loads: dict[str, list[str]],
           walks: dict[str, list[float]]) -> None:
    find_median = statistics.median(times["find"])
    one_median = statistics.median(times.get("1 rank", [float("nan")]))
    print(f"{args.files} files, +{args.lat_us} us per request, {args.runs} cold runs each")
    print(f"{'command':>13} {'min':>7} {'median':>7} {'max':>7} {'vs find':>7} "
          f"{'vs 1 rank':>9} {'walk':>6} {'requests':>9} {'in flight':>9}  load")
    for name, values in times.items():
        median = statistics.median(values)
        served = counts.get(name, {})
        requests = sum(v for k, v in served.items() if k != "most_in_flight")
        walk = f"{statistics.median(walks[name]):6.2f}" if walks[name] else f"{'-':>6}"
        print(f"{name:>13} {min(values):7.2f} {median:7.2f} {max(values):7.2f} "
              f"{median / find_median:7.3f} {one_median / median:8.1f}x {walk} {requests:9d} "
              f"{served.get('most_in_flight', 0):9d}  {'/'.join(loads[name])}")


if __name__ == "__main__":
    main()
