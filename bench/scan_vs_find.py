#!/usr/bin/env python3
"""Time dkmonitor's full scan against GNU find on the same tree (issue 6).

Builds (or reuses) a synthetic tree with bench/make_tree.py, then in one
run alternates ``find DIR -printf '%s %A@ %U\\n' >/dev/null`` and dkmonitor,
a warm-up of each first, and prints the median wall-time ratio dkmonitor/find
and dkmonitor's peak RSS (the largest of its processes, workers included:
``wait4`` reports the maximum over the child and the descendants it reaped).

Modes:
  cli   (default) the real command, walk + aggregate + store as ``run full``
        does it: ``dkmonitor --config CFG run path DIR --old-days N`` storing
        into a throw-away SQLite database;
  scan  ``scan_tree()`` alone, in a child python.
``--cold`` drops the page cache before every timed command (needs root).
``--tty`` also times dkmonitor with its stderr on a pseudo-terminal, where it
draws its progress line (files, bytes, rate), and prints what that costs.
``--latfs`` mounts the tree through bench/latfs.c (a FUSE passthrough
adding ``--lat-us`` to every metadata request, a stand-in for NFS/Lustre),
remounting before every command so each one starts with cold FUSE caches.

Trees live under ``--work-dir`` (default /tmp/dkm-bench), never in the repo.
Any ``python3`` can start it: dkmonitor runs from the checkout's ``.venv``
when this interpreter does not have it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from checkout import dkmonitor_python

BENCH = Path(__file__).resolve().parent
FIND_FORMAT = "%s %A@ %U\\n"
SCAN_SNIPPET = """
import sys, time
from dkmonitor.scan import ScanOptions, scan_tree
result = scan_tree(sys.argv[1], ScanOptions(old_days=float(sys.argv[2]), now=time.time(),
                                            workers=int(sys.argv[3])))
if result.errors:
    sys.exit(f"{result.errors} scan errors: {result.error_samples[:3]}")
"""


@dataclass(frozen=True)
class Measurement:
    seconds: float
    max_rss_kib: int
    cpu_seconds: float  # user + system, workers included: what contention cannot hide


def run_timed(command: list[str], cold: bool, tty: bool = False) -> Measurement:
    """Wall time and peak RSS of one command (its whole process tree).

    With ``tty`` its stderr is a pseudo-terminal, drained as a terminal would
    be, so dkmonitor draws its progress line as it does for a person.
    """
    if cold:
        drop_caches()
    terminal = pty.openpty() if tty else None
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=terminal[1] if terminal else subprocess.PIPE)
    if terminal is not None:
        os.close(terminal[1])
        chunks: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(terminal[0], chunks))
        reader.start()
        reader.join()
        os.close(terminal[0])
        stderr = b"".join(chunks)
    else:
        assert process.stderr is not None
        stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr.decode()}")
    return Measurement(elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)


def _drain(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            return
        if not chunk:
            return
        chunks.append(chunk)


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        sys.exit(f"--cold needs a writable /proc/sys/vm/drop_caches ({exc.strerror})")


def ensure_tree(work_dir: Path, files: int) -> Path:
    """Reuse work_dir/tree-N when its manifest says it is complete, else build it."""
    root = work_dir / f"tree-{files}"
    manifest = Path(f"{root}.manifest.json")
    if manifest.is_file() and root.is_dir():
        if json.loads(manifest.read_text()).get("files") == files:
            return root
    make_tree = BENCH / "make_tree.py"
    print(f"building {root} with {make_tree} ...", flush=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(make_tree), str(root), "--files", str(files),
                    "--clean"], check=True)
    return root


def cli_works() -> bool:
    try:
        done = subprocess.run([dkmonitor_python(), "-m", "dkmonitor", "--version"],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def dkmonitor_command(mode: str, root: Path, workers: int, old_days: float,
                      scratch: Path) -> list[str]:
    if mode == "scan":
        return [dkmonitor_python(), "-c", SCAN_SNIPPET, str(root), str(old_days), str(workers)]
    config = scratch / "settings.cfg"
    config.write_text(
        f"[general]\nstate_dir = {scratch}/state\n"
        f"[database]\nurl = sqlite:///{scratch}/bench.db\n"
        f"[scan]\nworkers = {workers}\none_file_system = yes\n"
        f"[logging]\nlog_dir = {scratch}/log\n"
    )
    # not -q: on a terminal (--tty) the progress line is drawn; stdout goes to /dev/null
    return [dkmonitor_python(), "-m", "dkmonitor", "--config", str(config),
            "run", "path", str(root), "--old-days", str(old_days)]


@contextlib.contextmanager
def latfs_binary() -> Iterator[Path]:
    source = BENCH / "latfs.c"
    with tempfile.TemporaryDirectory(prefix="dkm-latfs-") as build:
        binary = Path(build) / "latfs"
        flags = subprocess.run(["pkg-config", "fuse3", "--cflags", "--libs"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["gcc", "-O2", "-Wall", str(source), *flags, "-o", str(binary)],
                       check=True)
        yield binary


@contextlib.contextmanager
def latfs_mount(binary: Path, source: Path, mount_point: Path, lat_us: int) -> Iterator[Path]:
    """A fresh mount, so the kernel's FUSE entry/attr caches start empty."""
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(binary), str(source), str(mount_point), "-o", "ro,max_threads=64",
                    "-o", f"lat_us={lat_us}"], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["fusermount3", "-u", str(mount_point)], check=False)


def measure(args: argparse.Namespace, root: Path, scratch: Path) -> None:
    mode = args.mode
    if mode == "cli" and not cli_works():
        print("dkmonitor CLI not usable here: falling back to --mode scan", flush=True)
        mode = "scan"
    workers = args.workers
    find = ["find", "{root}", "-printf", FIND_FORMAT]
    ours = dkmonitor_command(mode, Path("{root}"), workers, args.old_days, scratch)

    binary_context = latfs_binary() if args.latfs else contextlib.nullcontext(None)
    with binary_context as binary:

        def timed(template: list[str], tty: bool = False) -> Measurement:
            if binary is None:
                return run_timed([part.replace("{root}", str(root)) for part in template],
                                 args.cold, tty)
            with latfs_mount(binary, root, scratch / "mnt", args.lat_us) as mounted:
                return run_timed([part.replace("{root}", str(mounted)) for part in template],
                                 args.cold, tty)

        where = f"latfs (+{args.lat_us} us per metadata op)" if binary else "local"
        cache = "cold" if args.cold else "warm"
        if binary:
            cache += " page cache, fresh FUSE mount per command"
        print(f"tree {root}: {count_files(root):,} files; {where}, {cache} cache; "
              f"mode {mode}; workers {workers}; {os.cpu_count()} cores; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        timed(find)  # warm-up (fills the cache when warm; checks both commands work)
        timed(ours)
        pairs: list[tuple[Measurement, Measurement]] = []
        on_tty: list[float] = []
        for index in range(args.runs):
            theirs, mine = timed(find), timed(ours)
            pairs.append((theirs, mine))
            shown = ""
            if args.tty:
                drawn = timed(ours, tty=True)
                on_tty.append(drawn.seconds / mine.seconds)
                shown = f"   on a terminal {drawn.seconds:7.3f} s"
            print(f"  run {index + 1}: find {theirs.seconds:7.3f} s   dkmonitor "
                  f"{mine.seconds:7.3f} s   ratio {mine.seconds / theirs.seconds:.3f}   "
                  f"peak RSS {mine.max_rss_kib / 1024:.1f} MiB   "
                  f"CPU find {theirs.cpu_seconds:.2f} s, dkmonitor {mine.cpu_seconds:.2f} s"
                  + shown, flush=True)

    find_median = statistics.median(p[0].seconds for p in pairs)
    ours_median = statistics.median(p[1].seconds for p in pairs)
    ratio = statistics.median(p[1].seconds / p[0].seconds for p in pairs)
    peak = max(p[1].max_rss_kib for p in pairs) / 1024
    print(f"median: find {find_median:.3f} s, dkmonitor {ours_median:.3f} s; "
          f"median ratio dkmonitor/find = {ratio:.3f} "
          f"({'faster' if ratio < 1 else 'slower'}: {1 / ratio:.2f}x find's speed); "
          f"dkmonitor peak RSS {peak:.1f} MiB; load {os.getloadavg()[0]:.2f}")
    if on_tty:
        print(f"progress line on a terminal: median cost "
              f"{(statistics.median(on_tty) - 1) * 100:+.1f}% of the run's wall time")


def count_files(root: Path) -> int:
    manifest = Path(f"{root}.manifest.json")
    return json.loads(manifest.read_text())["files"] if manifest.is_file() else -1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=None,
                        help="tree size (default 1,000,000; 20,000 with --latfs)")
    parser.add_argument("--root", type=Path, help="use this tree instead of building one")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dkm-bench"))
    parser.add_argument("--mode", choices=("cli", "scan"), default="cli")
    parser.add_argument("--workers", type=int, default=None,
                        help="scan workers (default: cores; 32 with --latfs)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--old-days", type=float, default=90)
    parser.add_argument("--cold", action="store_true", help="drop caches before each command")
    parser.add_argument("--latfs", action="store_true", help="go through the latfs FUSE mount")
    parser.add_argument("--lat-us", type=int, default=500)
    parser.add_argument("--tty", action="store_true",
                        help="also time dkmonitor drawing its progress line on a terminal")
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = 32 if args.latfs else (os.cpu_count() or 1)
    if args.files is None:
        args.files = 20_000 if args.latfs else 1_000_000
    if shutil.which("find") is None:
        sys.exit("GNU find is needed")
    root = args.root.resolve() if args.root else ensure_tree(args.work_dir, args.files)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run-", dir=args.work_dir) as scratch:
        measure(args, root, Path(scratch))


if __name__ == "__main__":
    main()
