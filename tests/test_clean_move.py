"""Moving old files to the relocation path: mirrored clean_tree, metadata kept, nothing lost."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from dkmonitor.clean.cleaner import Cleaner
from dkmonitor.clean.fsops import TEMP_PREFIX
from dkmonitor.clean.step import clean_step
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


def mirror(reloc: Path, source: Path) -> Path:
    return Path(f"{reloc}/{HOST}{source}")


def assert_same_metadata(moved: Path, before: os.stat_result) -> None:
    after = os.lstat(moved)
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode)
    assert after.st_mtime_ns == before.st_mtime_ns
    assert after.st_atime_ns == before.st_atime_ns


def make_tree(target: Path) -> dict[Path, tuple[bytes, os.stat_result]]:
    os.makedirs(target / "alice" / "run1")
    os.chown(target / "alice", 1001, 1001)
    os.chmod(target / "alice", 0o750)
    os.chown(target / "alice" / "run1", 1001, 1001)
    os.chmod(target / "alice" / "run1", 0o700)
    files = {
        target / "alice" / "run1" / "out.dat": dict(uid=1001, gid=1001, mode=0o640),
        target / "alice" / "setgid.sh": dict(uid=1001, gid=1003, mode=0o2755),
        target / "bob.dat": dict(uid=1002, gid=1002, mode=0o600),
    }
    made = {}
    for path, meta in files.items():
        data = make_file(path, size=4096, **meta)
        made[path] = (data, os.lstat(path))
    return made


@pytest.mark.parametrize("cross_fs", [False, True], ids=["same-fs", "cross-fs"])
def test_move_mirrors_tree_and_keeps_owner_mode_times(clean_tree, clean_db, tmpfs, cross_fs):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    if cross_fs:
        tmpfs(reloc, "16m")
    made = make_tree(target)
    make_file(target / "young.dat", age_days=1)

    summary = clean_step(clean_db, make_settings(),
                         make_run(make_task(target, relocation=reloc), scan_id=None))

    assert summary.error is None
    for path, (data, before) in made.items():
        assert not path.exists()
        moved = mirror(reloc, path)
        assert read_noatime(moved) == data
        assert_same_metadata(moved, before)
    assert (target / "young.dat").exists()
    for directory in ("alice", "alice/run1"):
        src_st, dst_st = os.stat(target / directory), os.stat(mirror(reloc, target / directory))
        assert (dst_st.st_uid, dst_st.st_gid, stat.S_IMODE(dst_st.st_mode)) == (
            src_st.st_uid, src_st.st_gid, stat.S_IMODE(src_st.st_mode))
    assert {uid: a.files for uid, a in summary.moved.items()} == {1001: 2, 1002: 1}
    rows = journal(clean_db)
    assert {(bytes(r.path), bytes(r.destination)) for r in rows} == {
        (os.fsencode(p), os.fsencode(mirror(reloc, p))) for p in made}
    assert all(r.action == "move" and r.outcome == "done" for r in rows)
    assert not [p for p in reloc.rglob(f"{TEMP_PREFIX}*")]


def test_cross_fs_move_keeps_xattrs(clean_tree, clean_db, tmpfs):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    tmpfs(reloc, "4m")
    make_file(target / "tagged.dat")
    os.setxattr(target / "tagged.dat", "trusted.dkm-test", b"value")
    clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    moved = mirror(reloc, target / "tagged.dat")
    assert os.getxattr(moved, "trusted.dkm-test") == b"value"


@pytest.mark.parametrize("cross_fs", [False, True], ids=["same-fs", "cross-fs"])
def test_name_taken_at_destination_is_never_overwritten(clean_tree, clean_db, tmpfs, cross_fs):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    if cross_fs:
        tmpfs(reloc, "4m")
    data = make_file(target / "d" / "f.dat")
    existing = mirror(reloc, target / "d" / "f.dat")
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"moved last month")
    (existing.parent / "f.dat.1").write_bytes(b"and the month before")

    clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))

    assert existing.read_bytes() == b"moved last month"
    assert (existing.parent / "f.dat.1").read_bytes() == b"and the month before"
    assert read_noatime(existing.parent / "f.dat.2") == data
    (row,) = journal(clean_db)
    assert bytes(row.destination) == os.fsencode(existing.parent / "f.dat.2")


@pytest.mark.parametrize("delete_when_full", [False, True])
def test_full_destination_leaves_no_partial_file_and_keeps_the_source(
    clean_tree, clean_db, tmpfs, delete_when_full
):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    tmpfs(reloc, "1m")
    big = make_file(target / "big.dat", size=3 * 1024 * 1024, age_days=300)
    small = make_file(target / "small.dat", size=1000, age_days=300)
    task = make_task(target, relocation=reloc, delete_when_full=delete_when_full)

    summary = clean_step(clean_db, make_settings(), make_run(task))

    assert not [p for p in reloc.rglob("*") if p.is_file()]  # no partial copy
    rows = [(r.action, r.outcome, os.path.basename(bytes(r.path))) for r in journal(clean_db)]
    if delete_when_full:
        assert summary.error is None
        assert not (target / "big.dat").exists() and not (target / "small.dat").exists()
        assert rows == [("move", "skipped", b"big.dat"), ("delete", "done", b"big.dat"),
                        ("delete", "done", b"small.dat")]
        assert summary.deleted[1001].files == 2
    else:
        assert summary.error and "full" in summary.error
        assert read_noatime(target / "big.dat") == big  # every source kept
        assert read_noatime(target / "small.dat") == small
        assert rows == [("move", "failed", b"big.dat")]
        assert summary.failed == 1 and not summary.moved


def test_hard_linked_files_are_not_moved(clean_tree, clean_db):
    target, outside, reloc = clean_tree["target"], clean_tree["outside"], clean_tree["reloc"]
    make_file(target / "linked.dat")
    os.link(target / "linked.dat", outside / "elsewhere")
    before = snapshot(outside)
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert (target / "linked.dat").exists() and snapshot(outside) == before
    (row,) = journal(clean_db)
    assert (row.outcome, summary.skipped) == ("skipped", 1) and "hard links" in row.reason


def test_non_utf8_names_move_and_journal_byte_exact(clean_tree, clean_db, tmpfs):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    tmpfs(reloc, "4m")
    raw_dir = os.fsencode(target) + b"/r\xe9sum\xe9"
    raw = raw_dir + b"/\xff\xfe.dat"
    data = make_file(raw)
    clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    expected = os.fsencode(reloc) + b"/" + HOST.encode() + raw
    assert not os.path.exists(raw) and read_noatime(expected) == data
    (row,) = journal(clean_db)
    assert bytes(row.path) == raw and bytes(row.destination) == expected


def test_file_used_after_selection_is_not_moved(clean_tree, clean_db):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    make_file(target / "f.dat")
    with Cleaner.open(clean_db, make_settings(),
                      make_run(make_task(target, relocation=reloc))) as cleaner:
        (candidate,) = next(cleaner.batches())
        st = os.stat(target / "f.dat")  # the owner reads it again: atime is now
        os.utime(target / "f.dat", ns=(time.time_ns(), st.st_mtime_ns))
        record = cleaner.act(candidate)
    assert record.outcome == "skipped"
    assert (target / "f.dat").exists() and not [p for p in reloc.rglob("*") if p.is_file()]


def test_directory_swapped_for_symlink_before_move_is_skipped(clean_tree, clean_db, tmpfs):
    target, outside, reloc = clean_tree["target"], clean_tree["outside"], clean_tree["reloc"]
    tmpfs(reloc, "4m")
    make_file(target / "u" / "f.dat")
    make_file(outside / "f.dat", uid=0, gid=0, mode=0o600)
    before = snapshot(outside)
    with Cleaner.open(clean_db, make_settings(),
                      make_run(make_task(target, relocation=reloc))) as cleaner:
        (candidate,) = next(cleaner.batches())
        os.rename(target / "u", target / "u.orig")
        os.symlink(outside, target / "u")
        record = cleaner.act(candidate)
    assert record.outcome == "skipped"
    assert snapshot(outside) == before
    assert not [p for p in reloc.rglob("*") if p.is_file()]


def test_symlink_planted_in_relocation_tree_is_not_followed(clean_tree, clean_db):
    target, outside, reloc = clean_tree["target"], clean_tree["outside"], clean_tree["reloc"]
    make_file(target / "u" / "f.dat")
    # a user who owns their mirrored directory plants a symlink where the next one goes
    base = mirror(reloc, target)
    base.mkdir(parents=True)
    os.symlink(outside, base / "u")
    before = snapshot(outside)
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert snapshot(outside) == before
    assert (target / "u" / "f.dat").exists()
    assert summary.skipped + summary.failed == 1


@pytest.mark.parametrize("where", ["inside", "equal", "symlink-into"])
def test_relocation_into_target_is_refused_at_run_time(clean_tree, clean_db, where):
    target = clean_tree["target"]
    make_file(target / "f.dat")
    if where == "inside":
        reloc = target / "moved"
    elif where == "equal":
        reloc = target
    else:
        reloc = clean_tree["outside"] / "sneaky"
        os.symlink(target / "sub", reloc)
        (target / "sub").mkdir()
    # bypass creation-time validation: the task may have been valid when created
    task = make_task(target, relocation=clean_tree["reloc"])
    task = task.with_changes(relocation_path=str(reloc))
    before = snapshot(target)
    summary = clean_step(clean_db, make_settings(), make_run(task))
    assert summary.error and "relocation path" in summary.error
    assert snapshot(target) == before and journal(clean_db) == []


def test_missing_relocation_path_is_refused_not_created(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "f.dat")
    reloc = clean_tree["outside"] / "not-mounted"
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert summary.error and str(reloc) in summary.error
    assert not reloc.exists() and (target / "f.dat").exists()


def test_dry_run_move_touches_nothing(clean_tree):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    make_tree(target)
    before = snapshot_all(clean_tree)
    summary = clean_step(None, make_settings(),
                         make_run(make_task(target, relocation=reloc), dry_run=True))
    assert snapshot_all(clean_tree) == before
    assert {uid: a.files for uid, a in summary.moved.items()} == {1001: 2, 1002: 1}


def test_source_written_during_a_cross_fs_copy_is_kept_and_the_copy_removed(
    clean_tree, clean_db, tmpfs, monkeypatch
):
    import dkmonitor.clean.mover as mover_module

    target, reloc = clean_tree["target"], tmpfs(clean_tree["reloc"], "4m")
    make_file(target / "f.dat")
    real_copy = mover_module.copy_file

    def copy_then_user_appends(*args, **kwargs):
        real_copy(*args, **kwargs)
        with open(target / "f.dat", "ab") as handle:
            handle.write(b"new data written while the copy ran")

    monkeypatch.setattr(mover_module, "copy_file", copy_then_user_appends)
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert read_noatime(target / "f.dat").endswith(b"new data written while the copy ran")
    assert not [p for p in reloc.rglob("*") if p.is_file()]
    assert summary.skipped == 1 and not summary.moved


def test_file_swapped_in_the_instant_before_the_rename_is_put_back(
    clean_tree, clean_db, monkeypatch
):
    import dkmonitor.clean.mover as mover_module

    target, reloc = clean_tree["target"], clean_tree["reloc"]
    make_file(target / "f.dat")
    real_rename = mover_module.rename_noreplace
    calls = []

    def swap_then_rename(src_fd, src, dst_fd, name):
        calls.append(name)
        if len(calls) == 1:  # the move itself; the second call puts the stranger back
            os.rename(target / "f.dat", target / "f.dat.orig")
            (target / "f.dat").write_bytes(b"someone else's file")
        return real_rename(src_fd, src, dst_fd, name)

    monkeypatch.setattr(mover_module, "rename_noreplace", swap_then_rename)
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert (target / "f.dat").read_bytes() == b"someone else's file"
    assert (target / "f.dat.orig").exists()
    assert not [p for p in reloc.rglob("*") if p.is_file()]
    assert summary.skipped == 1 and not summary.moved


def test_fifo_swapped_in_before_the_copy_is_never_opened_blocking(clean_tree):
    from dkmonitor.clean.fsops import Unsafe, open_source_file

    target = clean_tree["target"]
    make_file(target / "f.dat")
    checked = os.lstat(target / "f.dat")
    os.unlink(target / "f.dat")
    os.mkfifo(target / "f.dat")
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    signal.alarm(60)  # a blocking open of a FIFO would hang: fail instead
    try:
        with pytest.raises(Unsafe):
            open_source_file(fd, "f.dat", checked)
    finally:
        signal.alarm(0)
        os.close(fd)


def _sparse_file(path: Path, size: int, extents: list[tuple[int, bytes]], age_days: float) -> None:
    make_file(path, content=b"", age_days=age_days)
    with open(path, "r+b") as handle:
        handle.truncate(size)
        for offset, data in extents:
            handle.seek(offset)
            handle.write(data)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))


def test_cross_fs_move_keeps_sparse_files_sparse(clean_tree, clean_db, tmpfs):
    """64 MiB images with 192 KiB written must fit a 16 MiB archive, byte-identical."""
    target, reloc = clean_tree["target"], tmpfs(clean_tree["reloc"], "16m")
    mib = 1 << 20
    layouts = {
        "image.dat": [(0, os.urandom(65536)), (32 * mib, os.urandom(65536))],  # trailing hole
        "tail.dat": [(64 * mib - 65536, os.urandom(65536))],  # leading hole, data at the end
        "empty.dat": [],  # nothing but a hole
    }
    for name, extents in layouts.items():
        _sparse_file(target / name, 64 * mib, extents, age_days=300)
    before = {name: os.lstat(target / name) for name in layouts}
    expected = {name: read_noatime(target / name) for name in layouts}

    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))

    assert summary.error is None
    for name in layouts:
        moved = mirror(reloc, target / name)
        assert not (target / name).exists()
        assert read_noatime(moved) == expected[name]
        after = os.lstat(moved)
        assert after.st_size == 64 * mib
        assert after.st_blocks * 512 <= 1 * mib  # holes stayed holes
        assert_same_metadata(moved, before[name])
    assert sorted(r.outcome for r in journal(clean_db)) == ["done"] * 3
