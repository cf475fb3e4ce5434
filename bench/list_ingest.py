#!/usr/bin/env python3
"""Time ``dkmonitor run path DIR --from-list FILE --list-format F`` on big lists (issue 15).

A site scanner's list of 10M entries must be read in under a minute, in flat
memory. This script writes, deterministically (same bytes on every machine,
whatever the date), a synthetic list of ``--lines`` records for each format
(``find``: GNU find's documented ``-printf`` line, NUL-terminated; ``lfs``:
``lfs find -printf``, whole-second times; ``gpfs``: an mmapplypolicy LIST file
with ``ESCAPE '%/'``), plain and compressed (.gz with ``gzip -1``, .zst with
``zstd -1``), then runs the real command as a whole process, ``--runs`` times
per list, and prints wall time, CPU time and peak RSS (``wait4``) for each run,
then median [min-max] and the load average.

The lists describe a tree that does not exist (only the target directory is
created: the run reads its disk usage): 10 x 10 x 100 directories three
levels down and below them directories of 30 files each (so the top
directories' table, which like a walk's holds a sum per directory at most
three levels down, is the same 11,110 entries at 1M and at 10M records and
memory should not grow), 20 owners with a Zipf-like share, log-normal sizes, times over two years
before a fixed date, one symlink per directory, one file in ``--linked-every``
with a second name. A 10M-line find list is about 1.2 GB, a gpfs list about
2 GB: check ``df`` first; each list is deleted after its runs unless ``--keep``.

    .venv/bin/python bench/list_ingest.py                       # find, 1M and 10M, plain
    .venv/bin/python bench/list_ingest.py --formats find,lfs,gpfs --lines 1000000
    .venv/bin/python bench/list_ingest.py --compress none,gz,zst --lines 10000000
    .venv/bin/python bench/list_ingest.py --pure-python          # the loop without C helper

``--pure-python`` sets ``DKM_LIST_PURE_PYTHON=1`` in the command's environment
(the reader then skips its compiled helper, dkmonitor/scan/_listparse.c).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from checkout import dkmonitor_python

BASE = 1_790_000_000  # the list's "now" (2026-09-21): its bytes never depend on the date
TWO_YEARS = 2 * 365 * 86400
FILES_PER_DIR = 30
OWNERS = 20
TABLE = 4096  # values drawn once from a seeded generator, then indexed by a hash
TERMINATOR = {"find": b"\0", "lfs": b"\n", "gpfs": b"\n"}


@dataclass(frozen=True)
class Entry:
    """One record's fields, in find's terms (times in ns)."""

    ino: int
    nlink: int
    uid: int
    size: int
    blocks: int
    atime: int
    mtime: int
    ctime: int
    kind: str
    path: bytes


class Tables:
    """Seeded value tables, so that generating 10M records costs no random call each."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.sizes = [min(int(rng.lognormvariate(9.0, 2.5)), 1 << 40) for _ in range(TABLE)]
        self.ages = [int(rng.random() ** 2 * TWO_YEARS * 1e9) for _ in range(TABLE)]
        weights = [1 / (rank + 1) for rank in range(OWNERS)]
        self.owners = rng.choices([1000 + k for k in range(OWNERS)], weights, k=TABLE)


def entries(root: bytes, lines: int, linked_every: int, seed: int) -> Iterator[Entry]:
    """Exactly ``lines`` records: the target, directories, files, symlinks, extra names."""
    tables = Tables(seed)
    now_ns = BASE * 10**9
    yield Entry(2, 3, 0, 4096, 8, now_ns, now_ns, now_ns, "d", root)
    count, ino, d = 1, 100, 0
    while True:
        # 10 x 10 x 100 directories three levels down, the files one level below them
        top, mid, low, leaf = d // 1000 % 10, d // 100 % 10, d % 100, d // 10000
        parent = b"%s/g%d/h%d/k%02d/e%03d" % (root, top, mid, low, leaf)
        uid = tables.owners[(d * 2654435761 >> 7) % TABLE]
        dirs = [parent.rsplit(b"/", up)[0] for up in (3, 2, 1)
                if leaf == 0 and (up == 1 or low == 0) and (up < 3 or mid == 0)]
        dirs.append(parent)
        batch = [Entry(ino + k, 2, uid, 4096, 8, now_ns, now_ns, now_ns, "d", path)
                 for k, path in enumerate(dirs)]
        ino += len(dirs)
        batch.append(Entry(ino, 1, uid, 8, 0, now_ns, now_ns, now_ns, "l", parent + b"/link"))
        for f in range(FILES_PER_DIR):
            ino += 1
            mix = ino * 2654435761
            size = tables.sizes[(mix >> 5) % TABLE]
            mtime = now_ns - tables.ages[(mix >> 9) % TABLE]
            atime = max(mtime, now_ns - tables.ages[(mix >> 13) % TABLE])
            linked = ino % linked_every == 0
            entry = Entry(ino, 2 if linked else 1, uid, size, (size + 4095) // 4096 * 8,
                          atime, mtime, mtime, "f", b"%s/f%02d.dat" % (parent, f))
            batch.append(entry)
            if linked:
                batch.append(replace(entry, path=parent + b"/second-name"))
        for entry in batch:
            yield entry
            count += 1
            if count == lines:
                return
        d += 1


def find_record(e: Entry) -> bytes:
    return b"2049 %d %d %d %d %d %d.%09d0 %d.%09d0 %d.%09d0 %s %s\0" % (
        e.ino, e.nlink, e.uid, e.size, e.blocks, *divmod(e.atime, 10**9),
        *divmod(e.mtime, 10**9), *divmod(e.ctime, 10**9), e.kind.encode(), e.path)


def lfs_record(e: Entry) -> bytes:
    return b"%d %d %d %d %d %d %d %d %s %s\n" % (
        e.ino, e.nlink, e.uid, e.size, e.blocks, e.atime // 10**9, e.mtime // 10**9,
        e.ctime // 10**9, e.kind.encode(), e.path)


GPFS_MODES = {"f": "-rw-r--r--", "d": "drwxr-xr-x", "l": "lrwxrwxrwx"}


@functools.lru_cache(maxsize=1 << 16)  # the tables hold a few thousand distinct times
def gpfs_time(ns: int) -> str:
    seconds = ns // 10**9
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{ns % 10**9 // 1000:06d}"


def gpfs_record(e: Entry) -> bytes:
    show = "|".join((str(e.uid), str(e.size), str(e.blocks // 2), str(e.nlink),
                     GPFS_MODES[e.kind], gpfs_time(e.atime), gpfs_time(e.mtime),
                     gpfs_time(e.ctime)))
    path = quote(e.path, safe="/")
    return f"{e.ino} 65538 0  {quote(show, safe='/')} -- {path}\n".encode("ascii")


RECORDS = {"find": find_record, "lfs": lfs_record, "gpfs": gpfs_record}


def write_list(path: Path, list_format: str, root: Path, lines: int, linked_every: int,
               seed: int) -> None:
    """The plain list; compressed copies are made from it by the real gzip/zstd."""
    record = RECORDS[list_format]
    with open(path, "wb", buffering=1 << 20) as handle:
        chunk: list[bytes] = []
        for entry in entries(os.fsencode(root), lines, linked_every, seed):
            chunk.append(record(entry))
            if len(chunk) == 10000:
                handle.write(b"".join(chunk))
                chunk.clear()
        handle.write(b"".join(chunk))


def compress(plain: Path, kind: str) -> Path:
    if kind == "none":
        return plain
    out = Path(f"{plain}.{kind}")
    command = ["gzip", "-1", "-n", "-c"] if kind == "gz" else ["zstd", "-1", "-q", "-c"]
    with open(out, "wb") as handle:
        subprocess.run([*command, str(plain)], stdout=handle, check=True)
    return out


@dataclass(frozen=True)
class Measurement:
    seconds: float
    cpu_seconds: float
    max_rss_mib: float
    load: float


def run_once(command: list[str], env: dict[str, str]) -> Measurement:
    """Wall time, user+system time and peak RSS of the whole process (``wait4``)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr.decode(errors='replace')}")
    return Measurement(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                       os.getloadavg()[0])


def command_for(scratch: Path, root: Path, listing: Path, list_format: str) -> list[str]:
    config = scratch / "settings.cfg"
    if not config.exists():
        config.write_text(
            f"[general]\nstate_dir = {scratch}/state\n"
            f"[database]\nurl = sqlite:///{scratch}/bench.db\n"
            f"[logging]\nlog_dir = {scratch}/log\n"
        )
    return [dkmonitor_python(), "-m", "dkmonitor", "--config", str(config), "-q",
            "run", "path", str(root), "--old-days", "90",
            "--from-list", str(listing), "--list-format", list_format]


def spread(values: list[float], unit: str, digits: int = 2) -> str:
    return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-"
            f"{max(values):.{digits}f}] {unit}")


def bench_one(args: argparse.Namespace, scratch: Path, list_format: str, lines: int) -> None:
    root = scratch / "target"
    root.mkdir(exist_ok=True)
    plain = scratch / f"bench-{lines}.{list_format}"
    started = time.perf_counter()
    write_list(plain, list_format, root, lines, args.linked_every, args.seed)
    print(f"{plain.name}: {lines:,} records, {plain.stat().st_size / 1e9:.2f} GB, written in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    env = dict(os.environ)
    if args.pure_python:
        env["DKM_LIST_PURE_PYTHON"] = "1"
    try:
        for kind in args.compress:
            listing = compress(plain, kind)
            command = command_for(scratch, root, listing, list_format)
            runs = [run_once(command, env) for _ in range(args.runs)]
            for index, m in enumerate(runs):
                print(f"  {listing.name} run {index + 1}: {m.seconds:7.2f} s wall, "
                      f"{m.cpu_seconds:7.2f} s CPU, peak RSS {m.max_rss_mib:.1f} MiB, "
                      f"load {m.load:.2f}", flush=True)
            print(f"{list_format} {kind} {lines:,} lines: wall "
                  f"{spread([m.seconds for m in runs], 's')}, CPU "
                  f"{spread([m.cpu_seconds for m in runs], 's')}, peak RSS "
                  f"{spread([m.max_rss_mib for m in runs], 'MiB', 1)}, "
                  f"{lines / statistics.median(m.seconds for m in runs) / 1e6:.2f}M lines/s; "
                  f"load {spread([m.load for m in runs], '')}", flush=True)
            if listing != plain and not args.keep:
                listing.unlink()
    finally:
        if not args.keep:
            plain.unlink(missing_ok=True)


def warm_up(scratch: Path) -> None:
    """One untimed run first: it creates the database, which later runs only open."""
    root = scratch / "target"
    root.mkdir(exist_ok=True)
    tiny = scratch / "warm-up.find"
    write_list(tiny, "find", root, 1000, 100, 0)
    run_once(command_for(scratch, root, tiny, "find"), dict(os.environ))
    tiny.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", default="1000000,10000000",
                        help="comma-separated list sizes (default 1M and 10M)")
    parser.add_argument("--formats", default="find", help="comma-separated: find,lfs,gpfs")
    parser.add_argument("--compress", default="none", help="comma-separated: none,gz,zst")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--linked-every", type=int, default=10000,
                        help="one file in N has a second name (held in memory, as in a walk)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dkm-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the lists afterwards")
    parser.add_argument("--pure-python", action="store_true",
                        help="run the reader without its compiled helper")
    args = parser.parse_args(argv)
    args.compress = args.compress.split(",")
    formats = args.formats.split(",")
    for kind, tool in (("gz", "gzip"), ("zst", "zstd")):
        if kind in args.compress and shutil.which(tool) is None:
            sys.exit(f"--compress {kind} needs the {tool} command")
    if not set(formats) <= set(RECORDS) or not set(args.compress) <= {"none", "gz", "zst"}:
        sys.exit("--formats: find, lfs, gpfs; --compress: none, gz, zst")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
          f"free in {args.work_dir}: {shutil.disk_usage(args.work_dir).free / 1e9:.0f} GB; "
          f"{'pure Python' if args.pure_python else 'compiled helper if built'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lists-", dir=args.work_dir) as scratch:
        warm_up(Path(scratch))
        for list_format in formats:
            for lines in (int(n) for n in args.lines.split(",")):
                bench_one(args, Path(scratch), list_format, lines)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
