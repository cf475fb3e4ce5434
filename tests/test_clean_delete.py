"""Deleting old files as root: nothing outside the target, nothing young, nothing raced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dkmonitor.clean.cleaner import Cleaner
from dkmonitor.clean.step import clean_step
from dkmonitor.scan.disk import DiskUsage
from tests.fixtures.cleaning import (
    journal,
    make_file,
    make_run,
    make_settings,
    make_task,
    needs_root,
    snapshot,
)

pytestmark = needs_root


def delete_task(target: Path, **changes: object):
    return make_task(target, delete=True, **changes)


def test_deletes_only_old_regular_files_of_every_owner(clean_tree, clean_db):
    target = clean_tree["target"]
    for i, uid in enumerate((1001, 1002, 1003)):
        make_file(target / f"u{uid}" / "old.dat", uid=uid, gid=uid, size=100 * (i + 1))
        make_file(target / f"u{uid}" / "young.dat", uid=uid, gid=uid, age_days=2)
    make_file(target / "written-recently.dat", age_days=1, atime_age_days=200)
    make_file(target / "read-recently.dat", age_days=200, atime_age_days=1)

    summary = clean_step(clean_db, make_settings(), make_run(delete_task(target)))

    assert summary.error is None
    remaining = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert remaining == ["read-recently.dat", "u1001/young.dat", "u1002/young.dat",
                         "u1003/young.dat", "written-recently.dat"]
    assert {uid: (a.files, a.bytes) for uid, a in summary.deleted.items()} == {
        1001: (1, 100), 1002: (1, 200), 1003: (1, 300)}
    rows = journal(clean_db)
    assert sorted((r.action, r.outcome, r.uid) for r in rows) == [
        ("delete", "done", 1001), ("delete", "done", 1002), ("delete", "done", 1003)]
    assert {r.username for r in rows} and all(r.task_name == "scratch" for r in rows)


def test_age_basis_mtime_deletes_a_recently_read_file(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "read-recently.dat", age_days=200, atime_age_days=1)
    clean_step(clean_db, make_settings(), make_run(delete_task(target, age_basis="mtime")))
    assert not (target / "read-recently.dat").exists()


def test_not_over_critical_touches_nothing(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "old.dat")
    below = DiskUsage(total=100, used=50, available=50)
    summary = clean_step(clean_db, make_settings(), make_run(delete_task(target), disk=below))
    assert (target / "old.dat").exists()
    assert not summary.deleted and journal(clean_db) == []


def test_symlink_to_an_old_file_outside_is_not_followed(clean_tree, clean_db):
    target, outside = clean_tree["target"], clean_tree["outside"]
    make_file(outside / "shadow", uid=0, gid=0, mode=0o600)
    make_file(outside / "dir" / "precious.dat", uid=0, gid=0)
    os.symlink(outside / "shadow", target / "link-to-shadow")
    os.symlink(outside / "dir", target / "link-to-dir")
    os.makedirs(target / "a" / "b")
    os.symlink(outside / "dir", target / "a" / "b" / "mid")  # a symlink in the middle of a path
    before = snapshot(outside)

    summary = clean_step(clean_db, make_settings(), make_run(delete_task(target)))

    assert snapshot(outside) == before
    assert os.path.islink(target / "link-to-shadow") and os.path.islink(target / "a/b/mid")
    assert not summary.deleted and summary.error is None


def test_directory_swapped_for_symlink_after_selection_is_skipped(clean_tree, clean_db):
    target, outside = clean_tree["target"], clean_tree["outside"]
    make_file(target / "proj" / "data" / "victim.dat", uid=1002, gid=1002)
    make_file(outside / "data" / "victim.dat", uid=0, gid=0, mode=0o600)  # same name outside
    before = snapshot(outside)
    run = make_run(delete_task(target))

    with Cleaner.open(clean_db, make_settings(), run) as cleaner:
        (candidate,) = next(cleaner.batches())
        # the attack: the user replaces their directory with a symlink to root's
        os.rename(target / "proj" / "data", target / "proj" / "data.orig")
        os.symlink(outside / "data", target / "proj" / "data")
        record = cleaner.act(candidate)

    assert record.outcome == "skipped" and "symlink" in (record.reason or "")
    assert snapshot(outside) == before
    assert (target / "proj" / "data.orig" / "victim.dat").exists()
    assert [(r.outcome, r.reason) for r in journal(clean_db)] == [("skipped", record.reason)]


def test_top_directory_swapped_for_symlink_after_selection_is_skipped(clean_tree, clean_db):
    target, outside = clean_tree["target"], clean_tree["outside"]
    make_file(target / "a" / "b" / "c" / "f.dat")
    make_file(outside / "b" / "c" / "f.dat", uid=0, gid=0)
    before = snapshot(outside)
    with Cleaner.open(clean_db, make_settings(), make_run(delete_task(target))) as cleaner:
        (candidate,) = next(cleaner.batches())
        os.rename(target / "a", target / "a.orig")
        os.mkdir(target / "a")
        os.symlink(outside / "b", target / "a" / "b")
        record = cleaner.act(candidate)
    assert record.outcome == "skipped"
    assert snapshot(outside) == before
    assert (target / "a.orig" / "b" / "c" / "f.dat").exists()


def test_directory_replaced_by_another_directory_is_skipped(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "d" / "f.dat")
    with Cleaner.open(clean_db, make_settings(), make_run(delete_task(target))) as cleaner:
        (candidate,) = next(cleaner.batches())
        os.rename(target / "d", target / "d.orig")
        make_file(target / "d" / "f.dat", size=1000)  # look-alike, different directory
        record = cleaner.act(candidate)
    assert record.outcome == "skipped" and "directory was replaced" in (record.reason or "")
    assert (target / "d" / "f.dat").exists() and (target / "d.orig" / "f.dat").exists()


def test_file_swapped_for_symlink_after_selection_is_skipped(clean_tree, clean_db):
    target, outside = clean_tree["target"], clean_tree["outside"]
    make_file(target / "f.dat")
    make_file(outside / "secret", uid=0, gid=0)
    before = snapshot(outside)
    with Cleaner.open(clean_db, make_settings(), make_run(delete_task(target))) as cleaner:
        (candidate,) = next(cleaner.batches())
        os.unlink(target / "f.dat")
        os.symlink(outside / "secret", target / "f.dat")
        record = cleaner.act(candidate)
    assert record.outcome == "skipped"
    assert snapshot(outside) == before and os.path.islink(target / "f.dat")


def test_file_used_after_selection_is_not_deleted(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "f.dat")
    with Cleaner.open(clean_db, make_settings(), make_run(delete_task(target))) as cleaner:
        (candidate,) = next(cleaner.batches())
        # the owner reads it: atime is now (mtime and size unchanged)
        os.utime(target / "f.dat", ns=(time.time_ns(), os.stat(target / "f.dat").st_mtime_ns))
        record = cleaner.act(candidate)
    assert record.outcome == "skipped" and "used since selection" in (record.reason or "")
    assert (target / "f.dat").exists()


def test_file_rewritten_after_selection_is_not_deleted(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "f.dat", size=10)
    with Cleaner.open(clean_db, make_settings(), make_run(delete_task(target))) as cleaner:
        (candidate,) = next(cleaner.batches())
        make_file(target / "f.dat", size=20)  # still old by its times, but another content
        record = cleaner.act(candidate)
    assert record.outcome == "skipped" and (target / "f.dat").exists()


def test_fifo_socket_and_symlinks_are_never_opened_nor_removed(clean_tree, clean_db):
    target = clean_tree["target"]
    fifo = target / "old.fifo"
    os.mkfifo(fifo)
    old = os.stat(fifo).st_mtime - 400 * 86400
    os.utime(fifo, (old, old))
    make_file(target / "old.dat")
    signal.alarm(60)  # a FIFO opened for reading would block forever: fail, don't hang
    try:
        summary = clean_step(clean_db, make_settings(), make_run(delete_task(target)))
    finally:
        signal.alarm(0)
    assert os.path.exists(fifo) and not (target / "old.dat").exists()
    assert summary.deleted[1001].files == 1


def test_file_swapped_for_fifo_after_selection_is_skipped(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "f.dat")
    with Cleaner.open(clean_db, make_settings(), make_run(delete_task(target))) as cleaner:
        (candidate,) = next(cleaner.batches())
        os.unlink(target / "f.dat")
        os.mkfifo(target / "f.dat")
        record = cleaner.act(candidate)
    assert record.outcome == "skipped" and os.path.exists(target / "f.dat")


def test_mount_point_inside_target_is_not_crossed(clean_tree, clean_db, tmpfs):
    target = clean_tree["target"]
    inner = tmpfs(target / "mnt", "1m")
    make_file(inner / "old-on-other-fs.dat")
    make_file(target / "old.dat")
    clean_step(clean_db, make_settings(), make_run(delete_task(target)))
    assert (inner / "old-on-other-fs.dat").exists()
    assert not (target / "old.dat").exists()


def test_excluded_patterns_are_never_touched(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "keep.bak")
    make_file(target / "keepdir" / "inner.dat")
    make_file(target / "proj" / "results" / "r.dat")
    make_file(target / "proj" / "other.dat")
    settings = make_settings(exclude=("*.bak", "keepdir", f"{target}/proj/results*"))
    clean_step(clean_db, settings, make_run(delete_task(target)))
    assert (target / "keep.bak").exists()
    assert (target / "keepdir" / "inner.dat").exists()
    assert (target / "proj" / "results" / "r.dat").exists()
    assert not (target / "proj" / "other.dat").exists()


def test_non_utf8_names_are_deleted_and_journaled_byte_exact(clean_tree, clean_db):
    target = clean_tree["target"]
    raw = os.fsencode(target) + b"/caf\xe9-\xff.dat"
    make_file(raw)
    summary = clean_step(clean_db, make_settings(), make_run(delete_task(target)))
    assert not os.path.exists(raw)
    assert summary.deleted[1001].files == 1
    (row,) = journal(clean_db)
    assert bytes(row.path) == raw


def test_hard_linked_file_may_be_deleted_but_the_other_name_survives(clean_tree, clean_db):
    target, outside = clean_tree["target"], clean_tree["outside"]
    data = make_file(target / "linked.dat")
    os.link(target / "linked.dat", outside / "other-name")
    clean_step(clean_db, make_settings(), make_run(delete_task(target)))
    assert not (target / "linked.dat").exists()
    assert (outside / "other-name").read_bytes() == data


def test_dry_run_touches_nothing_and_journals_nothing(clean_tree):
    target = clean_tree["target"]
    make_file(target / "a.dat", size=300, uid=1001)
    make_file(target / "b.dat", size=200, uid=1002, gid=1002)
    make_file(target / "young.dat", age_days=1)
    before = snapshot(target)
    summary = clean_step(None, make_settings(), make_run(delete_task(target), dry_run=True))
    assert snapshot(target) == before
    assert summary.dry_run and summary.error is None
    assert {uid: (a.files, a.bytes) for uid, a in summary.deleted.items()} == {
        1001: (1, 300), 1002: (1, 200)}


def test_no_database_means_no_cleaning(clean_tree):
    target = clean_tree["target"]
    make_file(target / "a.dat")
    summary = clean_step(None, make_settings(), make_run(delete_task(target)))
    assert summary.error and "journal" in summary.error
    assert (target / "a.dat").exists()


def test_missing_target_is_an_error_not_a_crash(clean_tree, clean_db):
    summary = clean_step(clean_db, make_settings(),
                         make_run(delete_task(clean_tree["target"] / "missing")))
    assert summary.error and "missing" in summary.error


@pytest.fixture(autouse=True)
def _no_alarm_left():
    yield
    signal.alarm(0)
