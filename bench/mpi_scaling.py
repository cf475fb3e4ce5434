"""MPI scan scaling on a latency-bound filesystem: ranks 1/2/4/8/16 against GNU find.

    .venv/bin/python bench/mpi_scaling.py [--files 20800] [--lat-us 500] [--runs 3]

Needs root, Debian's fuse3, libfuse3-dev, gcc, openmpi-bin and dkmonitor[mpi].
Builds a tree under /tmp/dkm-bench/mpi-src (400 directories, several owners),
compiles latfs.c (a FUSE passthrough that sleeps ``--lat-us`` per metadata
request, the stand-in for NFS/Lustre round trips; from bench/ or the shared
folder beside the checkout) and, for each command, mounts it fresh (latfs
caches entries for an hour, so every run is a cold walk), runs, unmounts.
Prints min/median/max wall seconds and each median's ratio to find's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = Path("/tmp/dkm-bench")
DKMONITOR = str(Path(sys.executable).parent / "dkmonitor")


def build_tree(root: Path, files: int) -> None:
    stamp = root / ".complete"
    if stamp.exists() and stamp.read_text() == str(files):
        return
    shutil.rmtree(root, ignore_errors=True)
    per_dir = 52
    directories = max(1, files // per_dir)
    for number in range(directories):
        directory = root / f"a{number // 20}" / f"b{number % 20}"
        directory.mkdir(parents=True)
        for index in range(per_dir):
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


def timed_cold(latfs: Path, src: Path, mnt: Path, lat_us: int, command: list[str]) -> float:
    subprocess.run([str(latfs), str(src), str(mnt), "-o", "ro,max_threads=64",
                    "-o", f"lat_us={lat_us}"], check=True)
    try:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_800)
    parser.add_argument("--lat-us", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ranks", default="1,2,4,8,16")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("mpi_scaling: run as root (FUSE mount, files owned by several uids)")
    src = BASE / "mpi-src"
    build_tree(src, args.files)
    with tempfile.TemporaryDirectory(prefix="dkm-mpi-bench.") as tmp:
        work = Path(tmp)
        mnt = work / "mnt"
        mnt.mkdir()
        (work / "state").mkdir()
        config = work / "settings.cfg"
        config.write_text(f"[general]\nstate_dir = {work / 'state'}\n\n"
                          f"[database]\nurl = sqlite:///{work / 'state' / 'db.sqlite'}\n\n"
                          "[scan]\nworkers = 1\n")
        config.chmod(0o600)
        latfs = latfs_binary(work)
        env_mpi = ["env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                   "OMPI_MCA_rmaps_base_oversubscribe=1"]
        run = [DKMONITOR, "--config", str(config), "run", "path", str(mnt), "--dry-run"]
        commands = {"find": ["find", str(mnt), "-printf", "%s %U %A@ %T@\n"]}
        for ranks in (int(r) for r in args.ranks.split(",")):
            if ranks == 1:
                commands["1 rank"] = run
            else:
                # rank 0 leads and the other ranks - 1 walk
                commands[f"{ranks} ranks"] = [*env_mpi, "mpirun", "-n", str(ranks), *run]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so drift hits every command alike
            for name, command in commands.items():
                times[name].append(timed_cold(latfs, src, mnt, args.lat_us, command))
    find_median = statistics.median(times["find"])
    one_median = statistics.median(times.get("1 rank", [float("nan")]))
    print(f"{args.files} files, +{args.lat_us} us per request, {args.runs} cold runs each")
    print(f"{'command':>10} {'min':>8} {'median':>8} {'max':>8} {'vs find':>8} {'vs 1 rank':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>10} {min(values):8.2f} {median:8.2f} {max(values):8.2f} "
              f"{median / find_median:8.3f} {one_median / median:8.1f}x")


if __name__ == "__main__":
    main()
