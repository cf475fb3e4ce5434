"""Trouble inside the tree is counted, never a crash; other filesystems are not entered."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dkmonitor.scan import ScanOptions, scan_tree, walker
from dkmonitor.scan.walker import WalkConfig, walk_in_process
from tests.fixtures.tree import TreeBuilder, scan_as_unprivileged

pytestmark = pytest.mark.usefixtures("requires_root")


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_directory_is_an_error_not_a_crash(
    world_readable_tree: TreeBuilder, scan_now: float, workers: int
) -> None:
    scan_target = world_readable_tree
    scan_target.file("open/readable.dat", size=10)
    scan_target.file("locked/hidden.dat", size=1000)
    scan_target.file("locked/sub/deeper.dat", size=1000)
    scan_target.path("locked").chmod(0o000)
    result = scan_as_unprivileged(scan_target.root, ScanOptions(old_days=90, now=scan_now,
                                                         workers=workers))
    assert (result.total.files, result.total.bytes) == (1, 10)
    assert result.errors == 1
    assert "locked" in result.error_samples[0]
    assert "Permission denied" in result.error_samples[0]
    assert result.directories == 2  # target and open


@contextlib.contextmanager
def _scandir_deleting(fd: int, victims: tuple[str, ...]) -> Iterator[Iterator[os.DirEntry[str]]]:
    """os.scandir, except that each victim is removed right after readdir returned it.

    This reproduces, at a fixed point, what a user deleting files during the
    night does at a random one: the name was listed, then it is gone when the
    scanner comes to lstat (a file) or open (a directory) it.
    """
    with os.scandir(fd) as entries:

        def deleting() -> Iterator[os.DirEntry[str]]:
            for entry in entries:
                if entry.name.startswith(victims):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(os.path.join(f"/proc/self/fd/{fd}", entry.name))
                    else:
                        os.unlink(entry.name, dir_fd=fd)
                yield entry

        yield deleting()


def test_files_and_directories_vanishing_mid_scan(
    scan_target: TreeBuilder, scan_now: float
) -> None:
    """Uses the walker's scandir seam (the one place a test may reach inside)."""
    scan_target.file("keep/a.dat", size=1)
    scan_target.file("keep/doomed-file.dat", size=10)
    scan_target.file("doomed-dir/inside.dat", size=100)
    scan_target.file("keep/b.dat", size=1000)
    root = str(scan_target.root)
    config = WalkConfig.build(root, os.stat(root).st_dev, ScanOptions(old_days=90, now=scan_now))
    tally = walk_in_process(config, scandir=lambda fd: _scandir_deleting(fd, ("doomed",)))
    result = tally.to_result(root)
    assert (result.total.files, result.total.bytes) == (2, 1001)
    assert result.errors == 2
    assert all("No such file or directory" in sample for sample in result.error_samples)
    assert any("doomed-file.dat" in sample for sample in result.error_samples)
    assert any("doomed-dir" in sample for sample in result.error_samples)


def test_tree_deleted_while_parallel_scan_runs(scan_target: TreeBuilder, scan_now: float) -> None:
    """A real race (timing varies): whatever the interleaving, no crash and no over-count."""
    for d in range(20):
        for f in range(200):
            scan_target.file(f"d{d}/f{f}.dat", size=1)
    done = threading.Event()

    def delete_everything() -> None:
        for d in range(20):
            shutil.rmtree(scan_target.path(f"d{d}"), ignore_errors=True)
        done.set()

    deleter = threading.Thread(target=delete_everything)
    deleter.start()
    result = scan_tree(str(scan_target.root), ScanOptions(old_days=90, now=scan_now, workers=2))
    deleter.join()
    assert done.is_set()
    assert 0 <= result.total.files <= 4000
    assert result.total.bytes == result.total.files


@pytest.fixture
def mounted_tmpfs(scan_target: TreeBuilder) -> Iterator[Path]:
    """A tmpfs mounted inside the target, holding one file; skipped where mount is denied."""
    mount_point = scan_target.dir("u1/mnt")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "dkm-test", str(mount_point)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    try:
        scan_target.file("u1/mnt/on-other-fs.dat", size=777, uid=1002)
        scan_target.file("u1/mnt/sub/also-other.dat", size=1, uid=1002)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_mount_point_inside_target_is_not_crossed(
    scan_target: TreeBuilder, mounted_tmpfs: Path, scan_now: float, workers: int
) -> None:
    scan_target.file("u1/here.dat", size=5, uid=1001)
    stays = scan_tree(str(scan_target.root),
                      ScanOptions(old_days=90, now=scan_now, workers=workers))
    assert {uid: u.bytes for uid, u in stays.by_uid.items()} == {1001: 5}
    assert stays.directories == 2  # target, u1; not mnt nor mnt/sub

    crosses = scan_tree(str(scan_target.root), ScanOptions(old_days=90, now=scan_now,
                                                    workers=workers, one_file_system=False))
    assert {uid: u.bytes for uid, u in crosses.by_uid.items()} == {1001: 5, 1002: 778}
    assert crosses.directories == 4


@pytest.mark.parametrize("compiled", [True, False])
def test_ancestor_swapped_for_a_symlink_does_not_lead_outside(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float,
    monkeypatch: pytest.MonkeyPatch, compiled: bool,
) -> None:
    """A user replaces a directory with a symlink after it was listed, before its
    subdirectory is opened: the subdirectory is opened relative to the fd of
    the directory already open, so the walk stays where it was (the real
    directory, now under another name) and never follows the symlink."""
    if compiled and not walker.COMPILED:
        pytest.skip("the compiled scanner is not built here")
    monkeypatch.setattr(walker, "COMPILED", compiled)
    scan_target.file("a/b/mine.dat", size=10)
    outside = tmp_path / "outside"
    (outside / "b").mkdir(parents=True)
    (outside / "b" / "not-in-target.dat").write_bytes(b"x" * 999)
    real_open = os.open

    def open_after_swap(path: str, flags: int, *args: int, **kwargs: int) -> int:
        if path == "b" and not scan_target.path("a").is_symlink():
            scan_target.path("a").rename(scan_target.path("a-moved"))
            scan_target.path("a").symlink_to(outside)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_swap)
    result = scan_tree(str(scan_target.root), ScanOptions(old_days=90, now=scan_now))
    monkeypatch.undo()
    assert scan_target.path("a").is_symlink()  # the swap did happen mid-scan
    assert (result.total.files, result.total.bytes, result.errors) == (1, 10, 0)
