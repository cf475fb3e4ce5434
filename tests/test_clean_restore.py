"""Restoring moved files from the journal: byte-identical, same owner/mode/times, never
overwriting, same path safety as the moves."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from dkmonitor.clean.restore import restore_task
from dkmonitor.clean.step import clean_step
from dkmonitor.db.engine import Database, open_database
from dkmonitor.db.models import utcnow
from dkmonitor.db.tasks import create_task
from dkmonitor.errors import TaskError
from dkmonitor.taskspec import TaskSpec
from tests.fixtures.cleaning import (
    HOST,
    journal,
    make_file,
    make_run,
    make_settings,
    make_task,
    needs_root,
    read_noatime,
    snapshot,
    snapshot_all,
)

pytestmark = needs_root

NON_UTF8 = b"caf\xe9-\xff.dat"


def saved_task(database: Database, target: Path, reloc: Path) -> TaskSpec:
    task = make_task(target, relocation=reloc)
    with database.session() as session:
        return create_task(session, task)


def build(target: Path) -> dict[bytes, tuple[bytes, os.stat_result]]:
    os.makedirs(target / "alice" / "deep")
    os.chown(target / "alice", 1001, 1001)
    os.chmod(target / "alice", 0o710)
    paths = [
        (target / "alice" / "deep" / "thesis.pdf", 1001, 0o600),
        (target / "alice" / "setuid-tool", 1001, 0o4750),
        (target / "bob.tar", 1002, 0o644),
        (os.fsencode(target) + b"/" + NON_UTF8, 1003, 0o640),
    ]
    made = {}
    for path, uid, mode in paths:
        data = make_file(path, uid=uid, gid=uid, mode=mode, size=5000, age_days=200,
                         atime_age_days=150)
        made[os.fsencode(path)] = (data, os.lstat(path))
    return made


def move_all(database: Database, task: TaskSpec) -> None:
    summary = clean_step(database, make_settings(), make_run(task))
    assert summary.error is None and summary.moved


@pytest.mark.parametrize("cross_fs", [False, True], ids=["same-fs", "cross-fs"])
def test_restore_brings_files_back_byte_identical(clean_tree, database, tmpfs, cross_fs):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    if cross_fs:
        tmpfs(reloc, "16m")
    made = build(target)
    os.setxattr(target / "bob.tar", "trusted.dkm-test", b"kept")
    task = saved_task(database, target, reloc)
    move_all(database, task)
    assert not any(os.path.exists(p) for p in made)

    summary = restore_task(database, make_settings(), task.name)

    assert (summary.restored, summary.skipped, summary.failed, summary.error) == (4, 0, 0, None)
    for path, (data, before) in made.items():
        after = os.lstat(path)
        assert read_noatime(path) == data
        assert (after.st_uid, after.st_gid, after.st_mode) == (
            before.st_uid, before.st_gid, before.st_mode)
        assert (after.st_atime_ns, after.st_mtime_ns) == (before.st_atime_ns, before.st_mtime_ns)
    assert os.getxattr(target / "bob.tar", "trusted.dkm-test") == b"kept"
    assert not [p for p in reloc.rglob("*") if p.is_file()]
    rows = journal(database)
    moves = [r for r in rows if r.action == "move"]
    restores = [r for r in rows if r.action == "restore"]
    assert all(r.restored_at is not None for r in moves)
    assert {bytes(r.destination) for r in restores} == set(made)
    assert all(r.outcome == "done" for r in restores)
    # nothing left to restore the second time
    assert restore_task(database, make_settings(), task.name).restored == 0


def test_restore_never_overwrites_a_file_now_at_the_source_path(clean_tree, database):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    data = make_file(target / "results.csv")
    task = saved_task(database, target, reloc)
    move_all(database, task)
    (target / "results.csv").write_bytes(b"the user's new results")

    summary = restore_task(database, make_settings(), task.name)

    assert (summary.restored, summary.skipped) == (0, 1)
    assert (target / "results.csv").read_bytes() == b"the user's new results"
    assert read_noatime(Path(f"{reloc}/{HOST}{target}/results.csv")) == data
    rows = journal(database)
    assert rows[0].restored_at is None
    assert rows[1].action == "restore" and rows[1].outcome == "skipped"
    assert "not overwritten" in rows[1].reason


def test_restore_recreates_removed_directories_with_owner_and_mode(clean_tree, database):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    os.makedirs(target / "proj" / "sub")
    os.chown(target / "proj", 1002, 1003)
    os.chmod(target / "proj", 0o2770)
    data = make_file(target / "proj" / "sub" / "f.dat", uid=1002, gid=1003)
    task = saved_task(database, target, reloc)
    move_all(database, task)
    for directory in (target / "proj" / "sub", target / "proj"):
        directory.rmdir()

    assert restore_task(database, make_settings(), task.name).restored == 1
    st = os.stat(target / "proj")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1002, 1003, 0o2770)
    assert read_noatime(target / "proj" / "sub" / "f.dat") == data


def test_restore_does_not_follow_a_symlink_planted_in_the_target(clean_tree, database):
    target, outside, reloc = clean_tree["target"], clean_tree["outside"], clean_tree["reloc"]
    make_file(target / "u" / "f.dat")
    task = saved_task(database, target, reloc)
    move_all(database, task)
    os.rmdir(target / "u")
    os.symlink(outside, target / "u")
    before = snapshot(outside)

    summary = restore_task(database, make_settings(), task.name)

    # refused (not skipped): a symlink planted on the way is reported, exit 1
    assert summary.restored == 0 and summary.failed == 1
    assert "symlink" in (journal(database)[-1].reason or "")
    assert snapshot(outside) == before
    assert Path(f"{reloc}/{HOST}{target}/u/f.dat").exists()


def test_restore_filters_by_user_and_date(clean_tree, database):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    make_file(target / "a.dat", uid=1001)
    make_file(target / "b.dat", uid=1002, gid=1002)
    task = saved_task(database, target, reloc)
    move_all(database, task)
    bob = next(r.username for r in journal(database) if r.uid == 1002)
    tomorrow = utcnow() + timedelta(days=1)

    assert restore_task(database, make_settings(), task.name, since=tomorrow).restored == 0
    summary = restore_task(database, make_settings(), task.name, username=bob,
                           since=tomorrow - timedelta(days=2))
    assert summary.restored == 1
    assert (target / "b.dat").exists() and not (target / "a.dat").exists()


def test_restore_dry_run_touches_nothing(clean_tree, database):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    make_file(target / "a.dat")
    task = saved_task(database, target, reloc)
    move_all(database, task)
    before, rows_before = snapshot_all(clean_tree), len(journal(database))
    seen = []
    summary = restore_task(database, make_settings(), task.name, dry_run=True, report=seen.append)
    assert summary.restored == 1 and [i.outcome for i in seen] == ["done"]
    assert snapshot_all(clean_tree) == before
    assert len(journal(database)) == rows_before


def test_unknown_task_is_a_task_error(database):
    with pytest.raises(TaskError, match="no-such-task"):
        restore_task(database, make_settings(), "no-such-task")


def test_restore_command(clean_tree, dkm_sqlite):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    data = make_file(target / "x.dat")
    database = open_database(f"sqlite:///{dkm_sqlite.state_dir / 'dkmonitor.db'}")
    try:
        task = saved_task(database, target, reloc)
        move_all(database, task)
    finally:
        database.dispose()

    dry = dkm_sqlite("restore", task.name, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would restore 1 file (" in dry.stdout and not (target / "x.dat").exists()

    done = dkm_sqlite("restore", task.name, "--since", "2000-01-01")
    assert done.returncode == 0, done.stderr
    assert read_noatime(target / "x.dat") == data

    unknown = dkm_sqlite("restore", "nope")
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1 and "nope" in unknown.stderr
