"""The full scan's numbers, per DESIGN.md "What a full scan measures", on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dkmonitor.scan import ScanOptions, scan_tree
from dkmonitor.scan.age import DAY
from dkmonitor.scan.stats import Usage
from tests.fixtures.tree import UNKNOWN_UID, SyntheticTree, TreeBuilder, files_only

pytestmark = pytest.mark.usefixtures("requires_root")


def options(now: float, old_days: float = 90, **kwargs: object) -> ScanOptions:
    return ScanOptions(old_days=old_days, now=now, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def three_files(scan_target: TreeBuilder) -> TreeBuilder:
    """uid 1001: 100 B used 10 days ago, 2000 B used 200 days ago;
    uid 1002: 50 B read 100 days ago but written 5 days ago."""
    scan_target.file("u1/recent.dat", uid=1001, size=100, atime_days=10)
    scan_target.file("u1/deep/er/ancient.dat", uid=1001, size=2000, atime_days=200)
    scan_target.file("u2/written.dat", uid=1002, size=50, atime_days=100, mtime_days=5)
    return scan_target


@pytest.mark.parametrize("workers", [1, 2])
def test_used_basis_newer_of_atime_and_mtime(
    three_files: TreeBuilder, scan_now: float, workers: int
) -> None:
    result = scan_tree(str(three_files.root), options(scan_now, workers=workers))
    assert set(result.by_uid) == {1001, 1002}
    u1, u2 = result.by_uid[1001], result.by_uid[1002]
    assert (u1.files, u1.bytes, u1.old_files, u1.old_bytes) == (2, 2100, 1, 2000)
    assert u1.age_seconds == pytest.approx((10 + 200) * DAY, abs=1e-3)
    assert u1.average_age_days == pytest.approx(105, abs=1e-6)
    assert (u2.files, u2.bytes, u2.old_files, u2.old_bytes) == (1, 50, 0, 0)
    assert u2.average_age_days == pytest.approx(5, abs=1e-6)
    total = result.total
    assert (total.files, total.bytes, total.old_files, total.old_bytes) == (3, 2150, 1, 2000)
    assert total.average_age_days == pytest.approx(215 / 3, abs=1e-6)
    assert result.directories == 5  # target, u1, u1/deep, u1/deep/er, u2
    assert result.errors == 0


def test_atime_and_mtime_bases(three_files: TreeBuilder, scan_now: float) -> None:
    by_atime = scan_tree(str(three_files.root), options(scan_now, age_basis="atime"))
    assert (by_atime.by_uid[1002].old_files, by_atime.by_uid[1002].old_bytes) == (1, 50)
    assert by_atime.by_uid[1002].average_age_days == pytest.approx(100, abs=1e-6)
    assert by_atime.total.old_bytes == 2050

    by_mtime = scan_tree(str(three_files.root), options(scan_now, age_basis="mtime"))
    assert by_mtime.by_uid[1002].old_files == 0
    assert by_mtime.by_uid[1001].old_files == 1
    assert by_mtime.total.average_age_days == pytest.approx(215 / 3, abs=1e-6)


def test_ctime_basis(three_files: TreeBuilder, scan_now: float) -> None:
    """ctime cannot be set; it is "about now", so look from three days later."""
    later = scan_now + 3 * DAY
    result = scan_tree(str(three_files.root), options(later, old_days=2, age_basis="ctime"))
    assert result.total.old_files == 3
    expected = three_files.expected(old_days=2, basis="ctime", now=later)
    for uid, usage in expected.items():
        assert result.by_uid[uid].age_seconds == pytest.approx(usage.age_seconds, abs=1e-3)
    assert scan_tree(str(three_files.root), options(later, old_days=4, age_basis="ctime")) \
        .total.old_files == 0


def test_old_means_strictly_older(scan_target: TreeBuilder, scan_now: float) -> None:
    scan_target.file("exactly.dat", size=7, atime_days=90)
    scan_target.file("just_over.dat", size=11, atime_days=90 + 1 / DAY)
    result = scan_tree(str(scan_target.root), options(scan_now, old_days=90))
    assert (result.total.old_files, result.total.old_bytes) == (1, 11)


def test_future_files_have_age_zero(scan_target: TreeBuilder, scan_now: float) -> None:
    scan_target.file("future.dat", size=1, atime_days=-30)
    scan_target.file("old.dat", size=1, atime_days=10)
    result = scan_tree(str(scan_target.root), options(scan_now))
    assert result.total.average_age_days == pytest.approx(5, abs=1e-6)


def test_allocated_bytes_are_blocks_times_512(scan_target: TreeBuilder, scan_now: float) -> None:
    written = scan_target.file("written.dat", size=10_000, written=True)
    scan_target.file("sparse.dat", size=10_000_000)
    result = scan_tree(str(scan_target.root), options(scan_now))
    usage = result.by_uid[1001]
    assert usage.bytes == 10_010_000
    assert usage.allocated_bytes == os.lstat(written).st_blocks * 512 + \
        os.lstat(scan_target.path("sparse.dat")).st_blocks * 512
    assert usage.allocated_bytes >= 10_000
    assert files_only({1001: usage}) == {1001: scan_target.expected(90)[1001]}


def test_hard_links_count_once(scan_target: TreeBuilder, scan_now: float) -> None:
    scan_target.file("a/linked.dat", uid=1001, size=1000, atime_days=100)
    scan_target.hardlink("a/linked.dat", "b/second-name.dat")
    scan_target.hardlink("a/linked.dat", "c/d/third-name.dat")
    scan_target.file("a/plain.dat", uid=1001, size=1)
    result = scan_tree(str(scan_target.root), options(scan_now))
    usage = result.by_uid[1001]
    assert (usage.files, usage.bytes, usage.old_files, usage.old_bytes) == (2, 1001, 1, 1000)
    assert usage.average_age_days == pytest.approx(50, abs=1e-6)


def test_symlinks_never_followed_nor_counted(
    scan_target: TreeBuilder, scan_now: float, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.dat").write_bytes(b"x" * 5000)
    scan_target.file("real/data.dat", uid=1001, size=300)
    scan_target.symlink(scan_target.path("real/data.dat"), "link-to-file")
    scan_target.symlink(scan_target.path("real"), "link-to-dir")
    scan_target.symlink(outside / "big.dat", "link-out-file")
    scan_target.symlink(outside, "link-out-dir")
    scan_target.symlink("/nonexistent/dangling", "dangling")
    scan_target.fifo("real/a-fifo")
    result = scan_tree(str(scan_target.root), options(scan_now))
    assert {uid: (u.files, u.bytes) for uid, u in result.by_uid.items()} == {1001: (1, 300)}
    assert result.directories == 2  # target and real; linked directories are not walked
    assert result.errors == 0


def test_unknown_uid_is_its_number(scan_target: TreeBuilder, scan_now: float) -> None:
    scan_target.file("orphan.dat", uid=UNKNOWN_UID, size=42)
    scan_target.file("mine.dat", uid=1002, size=1)
    result = scan_tree(str(scan_target.root), options(scan_now))
    assert sorted(result.by_uid) == [1002, UNKNOWN_UID]
    assert result.by_uid[UNKNOWN_UID].bytes == 42


@pytest.mark.parametrize("workers", [1, 2])
def test_non_utf8_names(scan_target: TreeBuilder, scan_now: float, workers: int) -> None:
    scan_target.file(b"\xff\xfe.dat", size=10)
    scan_target.file(b"dir-\xe9t\xe9/inner-\x80.dat", size=20)
    result = scan_tree(str(scan_target.root), options(scan_now, workers=workers))
    assert (result.total.files, result.total.bytes, result.errors) == (2, 30, 0)
    assert result.directories == 2


def test_exclude_patterns(scan_target: TreeBuilder, scan_now: float) -> None:
    keep = scan_target.file("u1/keep.dat", size=1)
    scan_target.file("u1/scratch.tmp", size=10)  # name pattern
    scan_target.file("u1/cache/in-cache.dat", size=100)  # excluded dir by name: not descended
    scan_target.file("u1/cache/sub/deeper.dat", size=1000)
    scan_target.file("u2/skip/skipped.dat", size=10_000)  # path pattern
    kept_too = scan_target.file("u1/skip/not-skipped.dat", size=100_000)  # same name, other path
    opts = options(scan_now, exclude=("*.tmp", "cache", f"{scan_target.root}/u2/skip"))
    result = scan_tree(str(scan_target.root), opts)
    assert result.total.bytes == 100_001
    assert files_only(result.by_uid) == scan_target.expected(90, only={keep, kept_too})
    assert result.directories == 4  # target, u1, u1/skip, u2


def test_exclude_path_pattern_with_wildcards(scan_target: TreeBuilder, scan_now: float) -> None:
    scan_target.file("a/x.log", size=1)
    scan_target.file("b/x.log", size=2)
    scan_target.file("b/x.dat", size=4)
    pattern = f"{scan_target.root}/b/*.log"
    result = scan_tree(str(scan_target.root), options(scan_now, exclude=(pattern,)))
    assert result.total.bytes == 5


def test_root_missing_or_not_a_directory(tmp_path: Path, scan_now: float) -> None:
    with pytest.raises(FileNotFoundError):
        scan_tree(str(tmp_path / "nope"), options(scan_now))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        scan_tree(str(tmp_path / "file"), options(scan_now))
    with pytest.raises(NotADirectoryError):
        scan_tree(str(tmp_path / "file"), options(scan_now, workers=2))


def test_root_may_be_a_symlink_to_the_target(scan_target: TreeBuilder, scan_now: float,
                                             tmp_path: Path) -> None:
    scan_target.file("d/a.dat", size=5)
    alias = tmp_path / "alias"
    alias.symlink_to(scan_target.root)
    for workers in (1, 2):
        result = scan_tree(str(alias), options(scan_now, workers=workers))
        assert (result.total.files, result.errors) == (1, 0)


def test_empty_directory(scan_target: TreeBuilder, scan_now: float) -> None:
    result = scan_tree(str(scan_target.root), options(scan_now))
    assert (result.by_uid, result.directories, result.errors) == ({}, 1, 0)
    assert result.total == Usage()


@pytest.mark.parametrize("workers", [1, 3])
def test_progress_is_cumulative_and_ends_at_the_totals(
    scan_target: TreeBuilder, scan_now: float, workers: int
) -> None:
    for index in range(50):
        scan_target.file(f"d{index % 5}/f{index}.dat", size=index)
    calls: list[tuple[int, int]] = []
    result = scan_tree(str(scan_target.root), options(scan_now, workers=workers),
                       progress=lambda files, size: calls.append((files, size)))
    assert calls, "progress must be reported at least once"
    assert calls == sorted(calls)
    assert calls[-1] == (result.total.files, result.total.bytes) == (50, sum(range(50)))


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_matches_make_tree_manifest(synthetic_tree: SyntheticTree, workers: int) -> None:
    """make_tree.py counts "old" by atime (its mtimes are never newer than its atimes)."""
    manifest = synthetic_tree.manifest
    now = manifest["now"]
    opts = ScanOptions(old_days=manifest["old_days"], now=now, age_basis="atime",
                       workers=workers)
    result = scan_tree(str(synthetic_tree.root), opts)
    assert result.errors == 0
    assert result.directories == manifest["dirs"]
    assert result.total.files == manifest["files"]
    expected = manifest["per_uid"]
    assert sorted(result.by_uid) == sorted(int(uid) for uid in expected)
    for uid, want in expected.items():
        got = result.by_uid[int(uid)]
        assert (got.files, got.bytes, got.old_files, got.old_bytes) == (
            want["files"], want["bytes"], want["old_files"], want["old_bytes"])
        age_sum = want["files"] * now - want["sum_atime_ns"] / 1e9
        assert got.age_seconds == pytest.approx(age_sum, rel=1e-9)
    used = scan_tree(str(synthetic_tree.root),
                     ScanOptions(old_days=manifest["old_days"], now=now, workers=workers))
    assert used.by_uid == result.by_uid  # mtime <= atime there: "used" is the atime
