"""kill -9 announcing runs at random points: no announcement is lost, redated or half-written.

Round 0 announces a set of old files and completes. Each later round adds old
files, starts the real command and kills its process group after a random
delay drawn from the measured length of a whole run. A last run completes.
Then: the files of round 0 still carry the date of round 0 (a killed run
never restarts anybody's notice period), the record's SQLite part passes its
integrity check and its file of entries is whole (the count in its header,
sorted, each file once) and the only one left, every file in the user's list
is in root's record with the same purge date, every old file is listed, and no
temporary copy is left in the user's directory. The seed is printed so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from dkmonitor.announce import recordfile
from dkmonitor.announce.record import AnnounceRecord, record_path
from dkmonitor.announce.summary import unescape_path
from tests.fixtures.cleaning import real_user
from tests.fixtures.cli import DKMONITOR

ROUNDS = 12
NOTICE_DAYS = 1.0


def _old_files(where: Path, first: int, count: int, uid: int, gid: int) -> None:
    when = time.time() - 400 * 86400
    for number in range(first, first + count):
        path = where / f"d{number % 7}" / f"f{number}.dat"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * (number + 1))
        os.chown(path, uid, gid)
        os.utime(path, (when, when))


def _record(state_dir: Path) -> dict[bytes, float]:
    with sqlite3.connect(f"file:{record_path(state_dir, 'scr')}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with AnnounceRecord.open(state_dir, "scr", dry_run=True) as record:
        assert record.current_fd is not None
        entries = list(record.entries())
        assert recordfile.check_header(record.current_fd) == len(entries)
    keys = [(e.uid, e.dev, e.ino) for e in entries]
    assert keys == sorted(set(keys))
    generations = [p for p in record_path(state_dir, "scr").parent.iterdir()
                   if p.name.endswith(".files")]
    assert len(generations) == 1, generations  # a killed run's copy was removed
    return {e.path: e.announced_at for e in entries}


def test_killed_runs_never_lose_or_redate_an_announcement(dkm_factory, open_tree):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    user = real_user("dkmann1")
    notices = open_tree / "notices"
    dkm = dkm_factory(None, f"[announce]\nnotice_dir = {notices}\n")
    target = open_tree / "scratch"
    target.mkdir()
    _old_files(target, 0, 300, user.uid, user.gid)
    assert dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
               "--critical", "100", "--old-days", "30", "--delete",
               "--notice-days", str(NOTICE_DAYS)).returncode == 0

    started = time.monotonic()
    first = dkm("run", "full", "scr")
    length = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    dates = _record(dkm.state_dir)
    assert len(dates) == 300

    count = 300
    for _round in range(ROUNDS):
        _old_files(target, count, 40, user.uid, user.gid)
        count += 40
        process = subprocess.Popen([DKMONITOR, "--config", str(dkm.config), "run", "full", "scr"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, **dkm.env})
        try:
            process.wait(timeout=rng.uniform(0.0, length * 1.2))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    last = dkm("run", "full", "scr")
    assert last.returncode == 0, last.stderr
    record = _record(dkm.state_dir)
    assert len(record) == count  # every old file announced, none twice
    for path, announced_at in dates.items():
        assert record[path] == announced_at, path  # round 0's date survived every kill

    own = notices / str(user.uid)
    listed = {}
    for line in (own / "scr.list").read_text().splitlines():
        if not line.startswith("#"):
            _size, _used, purge_after, shown = line.split("\t")
            listed[unescape_path(shown)] = purge_after
    prefix = str(target).encode() + b"/"
    assert {prefix + path for path in record} == set(listed)
    for path, announced_at in record.items():
        due = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                            time.gmtime(announced_at + NOTICE_DAYS * 86400))
        assert listed[prefix + path] == due
    assert [p.name for p in own.iterdir() if p.name.endswith(".tmp")] == []
