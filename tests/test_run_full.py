"""`run full|quick|path` end to end: exact numbers read back through `view --format json`.

The tree holds files of several owners (two with passwd entries, one without),
old and new files by atime and mtime, a hard link in two directories, symlinks
to a file and a directory outside the target, a FIFO, and a non-UTF-8 name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pwd
import socket
import time
from dataclasses import dataclass

import pytest

DAY = 86400
HOST = socket.gethostname()
ALICE = pwd.getpwnam("daemon")  # any two existing accounts will do
BOB = pwd.getpwnam("bin")
GHOST = 54321  # no passwd entry


@dataclass
class Expected:
    files: int = 0
    bytes: int = 0
    allocated: int = 0
    old_files: int = 0
    old_bytes: int = 0
    age_days: float = 0.0

    def add(self, path: bytes, age_days: float, old: bool) -> None:
        st = os.lstat(path)
        self.files += 1
        self.bytes += st.st_size
        self.allocated += st.st_blocks * 512
        self.age_days += age_days
        if old:
            self.old_files += 1
            self.old_bytes += st.st_size


def make_file(path, size, uid, atime_days, mtime_days, now):
    with open(path, "wb") as handle:
        handle.write(b"x" * size)
    os.chown(path, uid, 0)
    os.utime(path, (now - atime_days * DAY, now - mtime_days * DAY))


@pytest.fixture
def tree(tmp_path):
    """Build the tree; returns (root, expected per username) for a 90-day threshold."""
    now = time.time()
    root = tmp_path / "target"
    outside = tmp_path / "outside"
    for d in (root / "a" / "deep", root / "b", root / "empty", outside / "dir"):
        d.mkdir(parents=True)
    expected = {ALICE.pw_name: Expected(), BOB.pw_name: Expected(), str(GHOST): Expected()}

    def add(rel, size, owner, atime_days, mtime_days, key):
        path = os.fsencode(root) + b"/" + rel
        make_file(path, size, owner, atime_days, mtime_days, now)
        used = min(atime_days, mtime_days)
        expected[key].add(path, used, used > 90)

    add(b"a/old.dat", 1000, ALICE.pw_uid, 200, 300, ALICE.pw_name)
    add(b"a/deep/new.dat", 3000, ALICE.pw_uid, 1, 5, ALICE.pw_name)
    add(b"a/\xff\xfe-latin1.dat", 100, ALICE.pw_uid, 2, 2, ALICE.pw_name)
    # old by mtime, but read yesterday: not old by last use
    add(b"b/read-recently.dat", 5000, BOB.pw_uid, 1, 400, BOB.pw_name)
    add(b"b/old.dat", 70000, BOB.pw_uid, 120, 150, BOB.pw_name)
    add(b"b/ghost.dat", 700, GHOST, 365, 365, str(GHOST))
    # one inode, two names, two directories: counted once
    add(b"b/linked.dat", 2000, BOB.pw_uid, 100, 100, BOB.pw_name)
    os.link(root / "b" / "linked.dat", root / "a" / "deep" / "linked-again.dat")
    # never counted, never followed
    make_file(outside / "secret.dat", 9999, ALICE.pw_uid, 500, 500, now)
    make_file(outside / "dir" / "more.dat", 8888, ALICE.pw_uid, 500, 500, now)
    os.symlink(outside / "secret.dat", root / "a" / "link-to-file")
    os.symlink(outside / "dir", root / "b" / "link-to-dir")
    os.mkfifo(root / "b" / "fifo")
    return root, expected


def create_task(dkm, name, target, *extra, warning="80", critical="99.9"):
    result = dkm(
        "task",
        "create",
        name,
        "--target",
        str(target),
        "--warning",
        warning,
        "--critical",
        critical,
        "--old-days",
        "90",
        *extra,
    )
    assert result.returncode == 0, result.stderr


def view_json(dkm, *args):
    result = dkm("view", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_full_run_stores_exact_per_user_numbers(dkm, tree):
    root, expected = tree
    create_task(dkm, "scratch", root)
    result = dkm("run", "full")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no terminal, nothing wrong: silent for cron

    records = view_json(dkm, "users")
    assert {r["username"] for r in records} == set(expected)
    for record in records:
        want = expected[record["username"]]
        assert record["task"] == "scratch"
        assert record["hostname"] == HOST
        assert record["target_path"] == str(root)
        assert (record["files"], record["bytes"], record["allocated_bytes"]) == (
            want.files,
            want.bytes,
            want.allocated,
        ), record["username"]
        assert (record["old_files"], record["old_bytes"]) == (want.old_files, want.old_bytes)
        assert record["average_age_days"] == pytest.approx(want.age_days / want.files, abs=0.01)
        assert record["errors"] == 0
        assert 0 < record["disk_use_percent"] < 100
    by_name = {r["username"]: r for r in records}
    assert by_name[str(GHOST)]["uid"] == GHOST
    assert by_name[ALICE.pw_name]["uid"] == ALICE.pw_uid

    (system,) = view_json(dkm, "system", HOST)
    assert system["username"] is None and system["uid"] is None
    assert system["files"] == sum(e.files for e in expected.values()) == 7
    assert system["bytes"] == sum(e.bytes for e in expected.values())
    assert system["old_files"] == sum(e.old_files for e in expected.values())
    assert set(system) == {
        "task",
        "hostname",
        "target_path",
        "username",
        "uid",
        "scanned_at",
        "files",
        "bytes",
        "allocated_bytes",
        "old_files",
        "old_bytes",
        "average_age_days",
        "disk_use_percent",
        "errors",
        "inodes",  # second round (DESIGN.md)
        "directories",
    }


def test_age_basis_mtime_counts_the_recently_read_file_as_old(dkm_sqlite, tree):
    root, _ = tree
    create_task(dkm_sqlite, "by-mtime", root, "--age-basis", "mtime")
    assert dkm_sqlite("run", "full", "by-mtime").returncode == 0
    (bob,) = view_json(dkm_sqlite, "user", BOB.pw_name)
    assert bob["old_files"] == 3  # read-recently, old, linked


def test_view_history_change_and_csv(dkm, tree):
    root, expected = tree
    create_task(dkm, "scratch", root)
    assert dkm("run", "full").returncode == 0
    (root / "b" / "grown.dat").write_bytes(b"y" * 4096)
    os.chown(root / "b" / "grown.dat", BOB.pw_uid, 0)
    assert dkm("run", "full").returncode == 0
    assert dkm("run", "full").returncode == 0

    latest = view_json(dkm, "user", BOB.pw_name)
    assert len(latest) == 1
    assert latest[0]["bytes"] == expected[BOB.pw_name].bytes + 4096
    history = view_json(dkm, "user", BOB.pw_name, "--history", "3")
    assert [r["bytes"] for r in history] == [latest[0]["bytes"]] * 2 + [expected[BOB.pw_name].bytes]
    # Newest first: the byte counts above tell the three scans apart; their times,
    # shown to the second, tie when the runs share a second.
    assert history[0]["scanned_at"] >= history[1]["scanned_at"] >= history[2]["scanned_at"]
    assert len(view_json(dkm, "system", HOST, "--history", "2")) == 2
    assert view_json(dkm, "system", HOST, "--path", "/elsewhere") == []
    assert view_json(dkm, "user", BOB.pw_name, "--host", "otherhost") == []

    table = dkm("view", "user", BOB.pw_name, "--history", "3", env={"FORCE_COLOR": "1"})
    assert "\x1b[31m+4.00 KiB" in table.stdout  # growth in red
    rows = list(csv.DictReader(io.StringIO(dkm("view", "systems", "--format", "csv").stdout)))
    assert len(rows) == 1 and rows[0]["username"] == "" and int(rows[0]["files"]) == 8


def test_view_all_aliases(dkm_sqlite, tree):
    root, _ = tree
    create_task(dkm_sqlite, "scratch", root)
    assert dkm_sqlite("run", "full").returncode == 0
    assert view_json(dkm_sqlite, "all", "users") == view_json(dkm_sqlite, "users")
    assert view_json(dkm_sqlite, "all", "systems") == view_json(dkm_sqlite, "systems")


def test_quick_run_scans_only_over_warning(dkm_sqlite, tree):
    root, _ = tree
    create_task(dkm_sqlite, "calm", root, warning="99.8", critical="99.9")
    create_task(dkm_sqlite, "busy", root, warning="0.0001", critical="99.9")
    result = dkm_sqlite("run", "quick")
    assert result.returncode == 0, result.stderr
    systems = view_json(dkm_sqlite, "systems")
    assert [s["task"] for s in systems] == ["busy"]  # only the task over warning got a full scan

    from dkmonitor.db.engine import open_database
    from dkmonitor.db.models import Scan

    url = dkm_sqlite.config.read_text().split("url = ")[1].split("\n")[0]
    db = open_database(url)
    with db.session() as session:
        kinds = sorted((s.task_name, s.kind) for s in session.query(Scan))
    db.dispose()
    assert kinds == [("busy", "full"), ("busy", "quick"), ("calm", "quick")]


def test_run_path_stores_under_path_name_and_dry_run_stores_nothing(dkm_sqlite, tree):
    root, expected = tree
    dry = dkm_sqlite("run", "path", str(root), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "TOTAL" in dry.stdout and "[dry run]" in dry.stdout
    assert view_json(dkm_sqlite, "systems") == []

    result = dkm_sqlite("run", "path", str(root), "--old-days", "90")
    assert result.returncode == 0, result.stderr
    assert ALICE.pw_name in result.stdout  # the per-user table
    (system,) = view_json(dkm_sqlite, "system", HOST)
    assert system["task"] == f"path:{root}"
    assert system["old_files"] == sum(e.old_files for e in expected.values())


def test_missing_target_fails_its_task_only(dkm_sqlite, tree, tmp_path):
    root, _ = tree
    create_task(dkm_sqlite, "gone", tmp_path / "not-there")
    create_task(dkm_sqlite, "fine", root)
    result = dkm_sqlite("run", "full")
    assert result.returncode == 1
    assert "gone" in result.stderr and str(tmp_path / "not-there") in result.stderr
    assert "Traceback" not in result.stderr
    assert [s["task"] for s in view_json(dkm_sqlite, "systems")] == ["fine"]


def test_tasks_of_other_hosts_are_not_run(dkm_sqlite, tree):
    root, _ = tree
    create_task(dkm_sqlite, "elsewhere", root, "--host", "other-host.example.edu")
    assert dkm_sqlite("run", "full").returncode == 0
    assert view_json(dkm_sqlite, "systems") == []
    named = dkm_sqlite("run", "full", "elsewhere")
    assert named.returncode == 2 and "other-host.example.edu" in named.stderr


def test_disabled_tasks_are_skipped_by_cron_runs(dkm_sqlite, tree):
    root, _ = tree
    create_task(dkm_sqlite, "off", root, "--disabled")
    assert dkm_sqlite("run", "full").returncode == 0
    assert view_json(dkm_sqlite, "systems") == []
