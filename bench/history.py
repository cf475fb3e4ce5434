"""History benchmark: are `dkmonitor view ...` answers instant at a year of data?

Fills a database with ``--days`` of nightly full scans (one user row per user)
and hourly quick scans (no user rows) for ``--tasks`` tasks x ``--users``
users -- by default one year, 10 x 500: 87,600 scans and 1,825,000 user rows
-- then times the real commands a person types, each in a fresh process as
they would run it::

    dkmonitor --config CFG view user NAME
    dkmonitor --config CFG view system HOST
    dkmonitor --config CFG view users

It reports the median wall time of several runs, the same query done in
process (so start-up cost and query cost can be told apart), the process
start-up alone (a `view system` of a host with no scans), and the database
size per stored row (scans + user_stats). The data comes from a fixed seed,
so two runs of the same arguments store the same rows.

    .venv/bin/python bench/history.py                         # SQLite in /tmp
    .venv/bin/python bench/history.py --url postgresql://postgres@127.0.0.1:55440/bench
    .venv/bin/python bench/history.py --tasks 2 --users 50 --days 30    # a quick look

(``python3 bench/history.py`` works too: it re-runs itself under the
checkout's ``.venv`` when this interpreter lacks dkmonitor.)
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from checkout import reexec_with_dkmonitor

reexec_with_dkmonitor()  # before the imports below need the virtualenv

from sqlalchemy import Engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from dkmonitor.db.engine import Database, open_database  # noqa: E402
from dkmonitor.db.models import Scan, UserStat  # noqa: E402
from dkmonitor.db.queries import system_records, user_records  # noqa: E402
from dkmonitor.db.readonly import ReadConnection, connect_current  # noqa: E402

END = datetime(2025, 1, 1)  # the history ends here, so runs are reproducible
FULL_HOUR = 2  # the nightly full scan starts at 02:00; quick scans the other hours
TIB = 1 << 40


@dataclass(frozen=True)
class Place:
    task: str
    hostname: str
    target_path: str


def places(tasks: int) -> list[Place]:
    """Two targets per host, like a cluster's scratch and project areas."""
    return [
        Place(f"task{i:02d}", f"host{i // 2:02d}", f"/scratch{i % 2}/shared") for i in range(tasks)
    ]


def usernames(users: int) -> list[str]:
    return [f"user{i:04d}" for i in range(users)]


def _history(
    tasks: int, users: int, days: int, seed: int
) -> Iterator[tuple[list[dict], list[dict]]]:
    """One day at a time: the scan rows and user rows of that day, ids assigned.

    Each user has a base size per place that grows a little every day, so
    "change since the previous scan" has something to show.
    """
    rng = random.Random(seed)
    where = places(tasks)
    names = usernames(users)
    base = [[rng.lognormvariate(20.5, 1.5) for _ in names] for _ in where]
    growth = [[rng.uniform(-0.002, 0.01) for _ in names] for _ in where]
    scan_id = 0
    user_id = 0
    start = END - timedelta(days=days)
    for day in range(days):
        scans: list[dict] = []
        stats: list[dict] = []
        midnight = start + timedelta(days=day)
        for hour in range(24):
            for p, place in enumerate(where):
                scan_id += 1
                started = midnight + timedelta(hours=hour, minutes=p)
                full = hour == FULL_HOUR
                used = int(TIB * (0.5 + 0.4 * ((day + p) % 90) / 90))
                row = {
                    "id": scan_id,
                    "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "task_name": place.task,
                    "hostname": place.hostname,
                    "target_path": place.target_path,
                    "kind": "full" if full else "quick",
                    "status": "ok",
                    "started_at": started,
                    "finished_at": started + timedelta(minutes=20 if full else 0, seconds=1),
                    "disk_total": 2 * TIB,
                    "disk_used": used,
                    "disk_available": 2 * TIB - used,
                    "disk_use_percent": round(100 * used / (2 * TIB), 2),
                    "files": None,
                    "bytes": None,
                    "allocated_bytes": None,
                    "old_files": None,
                    "old_bytes": None,
                    "average_age_days": None,
                    "errors": 0,
                    "message": None,
                }
                if full:
                    totals = [0, 0, 0, 0, 0]
                    for u, name in enumerate(names):
                        user_id += 1
                        size = int(base[p][u] * (1 + growth[p][u]) ** day)
                        files = size // 200_000 + 1
                        old = rng.random()
                        user = {
                            "id": user_id,
                            "scan_id": scan_id,
                            "uid": 10_000 + u,
                            "username": name,
                            "files": files,
                            "bytes": size,
                            "allocated_bytes": size + files * 2048,
                            "old_files": int(files * old),
                            "old_bytes": int(size * old),
                            "average_age_days": round(30 + 300 * old, 1),
                        }
                        stats.append(user)
                        for i, key in enumerate(
                            ("files", "bytes", "allocated_bytes", "old_files", "old_bytes")
                        ):
                            totals[i] += user[key]
                    row.update(
                        zip(
                            ("files", "bytes", "allocated_bytes", "old_files", "old_bytes"),
                            totals,
                            strict=True,
                        )
                    )
                    row["average_age_days"] = 120.0
                scans.append(row)
        yield scans, stats


def fill(db: Database, tasks: int, users: int, days: int, seed: int) -> float:
    """Bulk-load the history with Core executemany, a few days per transaction."""
    began = time.perf_counter()
    pending_scans: list[dict] = []
    pending_stats: list[dict] = []

    def flush() -> None:
        with db.engine.begin() as conn:
            conn = conn.execution_options(insertmanyvalues_page_size=5000)
            conn.execute(insert(Scan), pending_scans)
            if pending_stats:
                conn.execute(insert(UserStat), pending_stats)
        pending_scans.clear()
        pending_stats.clear()

    for day, (scans, stats) in enumerate(_history(tasks, users, days, seed), start=1):
        pending_scans.extend(scans)
        pending_stats.extend(stats)
        if len(pending_stats) >= 50_000:
            flush()
            print(f"\r  loaded {day}/{days} days", end="", file=sys.stderr, flush=True)
    if pending_scans:
        flush()
    print(file=sys.stderr)
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:  # ids were given explicitly: move the sequences on
            for table in ("scans", "user_stats"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
        # What autovacuum does shortly after a bulk load; without it the planner guesses.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - began


def row_counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        scans = conn.scalar(select(func.count()).select_from(Scan)) or 0
        stats = conn.scalar(select(func.count()).select_from(UserStat)) or 0
    return scans, stats


def database_bytes(db: Database) -> int:
    """The whole file (with its WAL, checkpointed) or the whole PostgreSQL database."""
    if db.is_sqlite:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = make_url(str(db.engine.url)).database or ""
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    with db.engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_database_size(current_database())")) or 0)


@dataclass(frozen=True)
class Timing:
    wall: float  # median seconds on the clock
    cpu: float  # median CPU seconds (user + system): steadier on a busy machine
    result: object


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(run: Callable[[], object], runs: int, cpu_clock: Callable[[], float]) -> Timing:
    walls, cpus = [], []
    result: object = None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), cpu_clock()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_clock() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), result)


def process(command: list[str]) -> Callable[[], int]:
    """One fresh process, as cron or a person would start it; returns its output lines."""

    # As cron runs it: with cached bytecode, whatever this shell says.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run() -> int:
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
        return len(done.stdout.splitlines())

    return run


def write_config(directory: Path, url: str) -> Path:
    (directory / "log").mkdir(exist_ok=True)
    config = directory / "settings.cfg"
    config.write_text(
        f"[general]\nstate_dir = {directory}\n\n"
        f"[database]\nurl = {url}\n\n"
        f"[logging]\nlog_dir = {directory / 'log'}\n"
    )
    return config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="database URL (default: a SQLite file under /tmp)")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (median)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time an already filled database instead of refusing to touch it",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="dkm-history-"))
    url = args.url or f"sqlite:///{workdir / 'history.db'}"
    db = open_database(url)
    backend = db.engine.dialect.name
    scans, stats = row_counts(db.engine)
    if scans and not args.reuse:
        raise SystemExit(f"{db.url} already holds {scans} scans: empty it, or pass --reuse")
    if not scans:
        print(
            f"filling {db.url}: {args.tasks} tasks x {args.users} users x {args.days} days",
            file=sys.stderr,
        )
        took = fill(db, args.tasks, args.users, args.days, args.seed)
        scans, stats = row_counts(db.engine)
        print(f"  {scans} scans, {stats} user rows in {took:.1f} s", file=sys.stderr)
    size = database_bytes(db)
    config = write_config(workdir, url)

    host = places(args.tasks)[0].hostname
    name = usernames(args.users)[args.users // 2]
    # This interpreter, not a `dkmonitor` found on PATH: a wrapper there (a pyenv
    # shim costs ~0.1 s) would be timed along with dkmonitor.
    dkm = [sys.executable, "-m", "dkmonitor", "--config", str(config)]
    python = [sys.executable, "-c"]
    # label, command to run in a fresh process, the same query in this process
    cases: list[tuple[str, list[str], Callable[[ReadConnection], list] | None]] = [
        ("python -c pass", [*python, "pass"], None),
        ("python: import sqlalchemy", [*python, "import sqlalchemy"], None),
        ("python: import sqlalchemy.orm", [*python, "import sqlalchemy.orm"], None),
        ("python: import dkmonitor.cli", [*python, "import dkmonitor.cli"], None),
        ("dkm start-up + db open", [*dkm, "view", "system", "no-such-host"], None),
        (f"view user {name}", [*dkm, "view", "user", name], lambda s: user_records(s, name)),
        (f"view system {host}", [*dkm, "view", "system", host], lambda s: system_records(s, host)),
        ("view users", [*dkm, "view", "users"], lambda s: user_records(s)),
        (
            f"view user {name} --history 30",
            [*dkm, "view", "user", name, "--history", "30"],
            lambda s: user_records(s, name, history=30),
        ),
    ]

    print()
    print(
        f"{backend}: {scans:,} scans + {stats:,} user rows = {scans + stats:,} rows; "
        f"database {size / 2**20:.1f} MiB = {size / (scans + stats):.0f} bytes/row"
    )
    header = (
        f"{'backend':<10} {'command':<32} {'cli s':>6} {'cli cpu':>7} "
        f"{'query s':>7} {'q cpu':>6} {'rows':>5}"
    )
    print(header)
    print("-" * len(header))
    for label, command, query in cases:
        process(command)()  # warm the page cache and .pyc files
        cli = measure(process(command), args.runs, _children_cpu)
        line = f"{backend:<10} {label:<32} {cli.wall:6.3f} {cli.cpu:7.3f} "
        if query is None:
            line += f"{'-':>7} {'-':>6} {'-':>5}"
        else:
            # The connection a view reads through: the driver's own, the schema being at head.
            with connect_current(url) or db.reader() as reader:
                done = measure(lambda q=query: q(reader), args.runs, time.process_time)
            line += f"{done.wall:7.3f} {done.cpu:6.3f} {len(done.result):>5}"  # type: ignore[arg-type]
        print(line, flush=True)
    db.dispose()


if __name__ == "__main__":
    main()
