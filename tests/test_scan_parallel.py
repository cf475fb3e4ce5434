"""The parallel scanner gives exactly the single-process numbers, and cleans up after itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dkmonitor.scan import ScanOptions, ScanWorkerError, scan_tree
from dkmonitor.scan.stats import ScanResult
from dkmonitor.scan.tally import Tally
from tests.fixtures.tree import UNKNOWN_UID, TreeBuilder, files_only

pytestmark = pytest.mark.usefixtures("requires_root")


def build_mixed_tree(scan_target: TreeBuilder, outside: Path) -> None:
    """Several big subtrees, hard links across them, symlinks, odd names and owners."""
    outside.mkdir()
    (outside / "elsewhere.dat").write_bytes(b"y" * 4096)
    uids = (1001, 1002, UNKNOWN_UID)
    for top in range(6):
        for sub in range(top * 3 + 1):  # unequal subtrees: one much bigger than the rest
            for index in range(25):
                scan_target.file(f"t{top}/s{sub}/deep/f{index}.dat", uid=uids[(top + index) % 3],
                          size=index * 100 + top, atime_days=index * 7 + sub,
                          mtime_days=index * 9, written=index == 0)
    for top in range(6):  # one inode, linked from every subtree
        if top:
            scan_target.hardlink("t0/s0/deep/f3.dat", f"t{top}/s0/shared-{top}.dat")
        scan_target.symlink(scan_target.path("t1"), f"t{top}/to-t1")
        scan_target.symlink(outside, f"t{top}/to-outside")
        scan_target.symlink(outside / "elsewhere.dat", f"t{top}/s0/deep/link.dat")
    scan_target.hardlink("t5/s15/deep/f24.dat", "t2/s1/pair.dat")
    scan_target.file(b"t3/\xff\xfe.dat", uid=UNKNOWN_UID, size=12345, atime_days=400)
    scan_target.file(b"t4/caf\xe9/x.dat", uid=1002, size=1, atime_days=91)


def assert_same(result: ScanResult, reference: ScanResult) -> None:
    assert result.by_uid == reference.by_uid  # every field, age sums included, exactly
    assert result.total == reference.total
    assert result.directories == reference.directories
    assert result.errors == reference.errors == 0


@pytest.mark.parametrize("basis", ["used", "atime", "mtime"])
def test_parallel_equals_single_process(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, basis: str
) -> None:
    build_mixed_tree(scan_target, tmp_path / "outside")
    single = scan_tree(str(scan_target.root),
                       ScanOptions(old_days=30, now=scan_now, age_basis=basis))
    assert files_only(single.by_uid) == scan_target.expected(30, basis)
    for workers in (2, 4, 7):
        parallel = scan_tree(str(scan_target.root), ScanOptions(old_days=30, now=scan_now,
                                                         age_basis=basis, workers=workers))
        assert_same(parallel, single)


def test_parallel_equals_single_process_with_a_mount_inside(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    build_mixed_tree(scan_target, tmp_path / "outside")
    mount_point = scan_target.dir("t2/mnt")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "dkm-test",
                              str(mount_point)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here")
    try:
        scan_target.file("t2/mnt/other-fs.dat", size=99)
        single = scan_tree(str(scan_target.root), ScanOptions(old_days=30, now=scan_now))
        scan_target.forget(scan_target.path("t2/mnt/other-fs.dat"))
        assert files_only(single.by_uid) == scan_target.expected(30)
        for workers in (2, 4):
            assert_same(scan_tree(str(scan_target.root), ScanOptions(old_days=30, now=scan_now,
                                                              workers=workers)), single)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_hard_link_seen_by_two_workers_counts_once() -> None:
    """The merge itself: two workers' tallies holding the same inode."""
    first, second = Tally(), Tally()
    first.linked[(1, 99)] = (1001, 500, 8, 10_000_000_000, True, "b/x")
    second.linked[(1, 99)] = (1001, 500, 8, 10_000_000_000, True, "a")
    second.linked[(1, 100)] = (1002, 7, 0, 0, False, "")
    first.by_uid[1001] = [1, 10, 0, 0, 0, 0, 0, 0]
    first.merge(second)
    result = first.to_result("/t")
    usage = result.by_uid[1001]
    assert (usage.files, usage.bytes, usage.allocated_bytes) == (2, 510, 4096)
    assert (usage.old_files, usage.old_bytes, usage.age_seconds) == (1, 500, 10.0)
    assert result.by_uid[1002].files == 1
    # the shared inode counts under the smallest directory key, whoever saw it first
    assert [(d.path, d.bytes) for d in result.top_dirs_by_bytes] == [("/t/a", 500)]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def test_interrupt_leaves_no_worker_behind(scan_target: TreeBuilder, scan_now: float) -> None:
    for index in range(2000):
        scan_target.file(f"d{index % 40}/f{index}.dat", size=1)

    def interrupt(files: int, size: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_tree(str(scan_target.root), ScanOptions(old_days=1, now=scan_now, workers=4),
                  progress=interrupt)
    assert _children(os.getpid()) == []


def test_workers_print_nothing(
    scan_target: TreeBuilder, scan_now: float, capfd: pytest.CaptureFixture[str]
) -> None:
    scan_target.file("a/b.dat", size=1)
    scan_tree(str(scan_target.root), ScanOptions(old_days=1, now=scan_now, workers=3))
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")


_HANGING_SCAN = """
import sys, time
from dkmonitor.scan import ScanOptions, ScanWorkerError, scan_tree
scan_tree(sys.argv[1], ScanOptions(old_days=1, now=time.time(), workers=3),
          progress=lambda files, size: time.sleep(600))  # killed long before
"""


def test_workers_die_with_a_killed_parent(scan_target: TreeBuilder) -> None:
    """SIGKILL gives the parent no chance to clean up: the kernel must end the workers."""
    scan_target.file("a/b.dat", size=1)
    parent = subprocess.Popen([sys.executable, "-c", _HANGING_SCAN, str(scan_target.root)])
    try:
        deadline = time.monotonic() + 120  # generous: the loop ends as soon as they are up
        while len(workers := _children(parent.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 3, "the scan did not start its workers"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 60  # generous: the loop ends as soon as they are gone
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_killed_worker_fails_the_scan_instead_of_hanging(
    scan_target: TreeBuilder, scan_now: float
) -> None:
    scan_target.file("a/b.dat", size=1)

    def kill_a_worker(files: int, size: int) -> None:
        workers = _children(os.getpid())
        if workers:
            os.kill(workers[0], signal.SIGKILL)

    with pytest.raises(ScanWorkerError):
        scan_tree(str(scan_target.root), ScanOptions(old_days=1, now=scan_now, workers=2),
                  progress=kill_a_worker)
    assert _children(os.getpid()) == []
