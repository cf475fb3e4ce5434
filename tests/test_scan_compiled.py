"""The compiled per-directory loop gives exactly the numbers of the Python loop.

``dkmonitor.scan._dirscan`` is optional (built when a compiler is there), so the
Python loop in walker.py stays the reference: every test here scans the same
tree both ways and compares every field, age sums included, and also checks
the result against the tree builder's own oracle.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dkmonitor
from dkmonitor.scan import ScanOptions, scan_tree, walker
from dkmonitor.scan.age import DAY
from dkmonitor.scan.stats import ScanResult
from tests.fixtures.tree import (
    UNKNOWN_UID,
    TreeBuilder,
    assert_census,
    census,
    files_only,
    scan_as_unprivileged,
)
from tests.test_scan_parallel import build_mixed_tree

pytestmark = pytest.mark.usefixtures("requires_root")


@pytest.fixture(autouse=True)
def compiled_loop() -> None:
    if not walker.COMPILED:
        if os.environ.get("CI") == "true":
            pytest.fail("dkmonitor.scan._dirscan was not built (needs gcc and python3-dev)")
        pytest.skip("the compiled scanner is not built here")


def scan_both(
    root: Path, monkeypatch: pytest.MonkeyPatch, **options: object
) -> tuple[ScanResult, ScanResult]:
    """(compiled, python) results of the same scan; forked workers inherit the switch."""
    compiled = scan_tree(str(root), ScanOptions(**options))  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        patch.setattr(walker, "COMPILED", False)
        python = scan_tree(str(root), ScanOptions(**options))  # type: ignore[arg-type]
    return compiled, python


def assert_same(compiled: ScanResult, python: ScanResult) -> None:
    """Every field, the new ones (inodes, histograms, top directories) included."""
    assert compiled.by_uid == python.by_uid
    assert compiled.fileless_owners == python.fileless_owners
    assert compiled.total == python.total
    assert compiled.directories == python.directories
    assert compiled.size_histogram == python.size_histogram
    assert compiled.age_histogram == python.age_histogram
    assert compiled.top_dirs_by_bytes == python.top_dirs_by_bytes
    assert compiled.top_dirs_by_old_bytes == python.top_dirs_by_old_bytes
    assert (compiled.errors, compiled.error_samples) == (python.errors, python.error_samples)


def test_the_compiled_loop_is_what_runs_by_default(tmp_path: Path) -> None:
    config = walker.WalkConfig.build(str(tmp_path), os.stat(tmp_path).st_dev,
                                     ScanOptions(old_days=1, now=0.0))
    assert walker.Walker(config).compiled
    # the tests' race seam (a substituted scandir) needs the Python loop
    assert not walker.Walker(config, scandir=lambda fd: os.scandir(fd)).compiled


@pytest.mark.parametrize("basis", ["used", "atime", "mtime", "ctime"])
@pytest.mark.parametrize("workers", [1, 3])
def test_same_numbers_on_a_mixed_tree(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, monkeypatch: pytest.MonkeyPatch,
    basis: str, workers: int,
) -> None:
    build_mixed_tree(scan_target, tmp_path / "outside")
    compiled, python = scan_both(scan_target.root, monkeypatch, old_days=30, now=scan_now,
                                 age_basis=basis, workers=workers)
    assert_same(compiled, python)
    assert files_only(compiled.by_uid) == scan_target.expected(30, basis)
    assert UNKNOWN_UID in compiled.by_uid


def _file_used_at(path: Path, uid: int, last_use_ns: int, size: int) -> None:
    path.write_bytes(b"z" * size)
    os.chown(path, uid, uid)
    os.utime(path, ns=(last_use_ns, last_use_ns))


def test_files_at_the_old_boundary_and_at_extreme_times(
    scan_target: TreeBuilder, scan_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Either side of "old" by a nanosecond, a few microseconds, and times far off.

    The Python loop decides near the boundary with age.is_old on float seconds;
    the compiled loop must reach the same verdicts, and must not overflow on
    times before 1970 or after 2262 (nanoseconds past 64 bits).
    """
    old_days = 30
    cut_ns = int((scan_now - old_days * DAY) * 1e9)
    offsets = [0, 1, -1, 100, -100, 4_999, -4_999, 20_000, -20_000, 10**9, -10**9]
    for index, offset in enumerate(offsets):
        _file_used_at(scan_target.root / f"edge{index}", 1001 + index % 3, cut_ns + offset,
                      index + 1)
    extremes = [-2_000_000_000 * 10**9, 0, 12_000_000_000 * 10**9]  # 1906, 1970, 2350
    for index, when in enumerate(extremes):
        _file_used_at(scan_target.root / f"far{index}", 1004, when, 10 * (index + 1))
    for path in scan_target.root.iterdir():
        scan_target._inodes[(os.lstat(path).st_dev, os.lstat(path).st_ino)] = path
    compiled, python = scan_both(scan_target.root, monkeypatch, old_days=old_days, now=scan_now)
    assert_same(compiled, python)
    expected = scan_target.expected(old_days)
    assert compiled.by_uid.keys() == expected.keys()
    for uid, usage in files_only(compiled.by_uid).items():  # the oracle sums float ages
        assert dataclasses.replace(usage, age_seconds=0) == dataclasses.replace(
            expected[uid], age_seconds=0)
        assert usage.age_seconds == pytest.approx(expected[uid].age_seconds, abs=1e-3)
    # the boundary really splits them (a few ns either side round to the same float)
    assert 4 <= compiled.total.old_files <= compiled.total.files - 6


def test_exclusions_apply_the_same_way(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_mixed_tree(scan_target, tmp_path / "outside")
    exclude = ("*.tmp", "f1*.dat", f"{scan_target.root}/t3/*", "deep")
    for index in range(5):
        scan_target.file(f"t1/junk{index}.tmp", size=7)
    compiled, python = scan_both(scan_target.root, monkeypatch, old_days=30, now=scan_now,
                                 exclude=exclude, workers=2)
    assert_same(compiled, python)
    assert compiled.total.files < len(scan_target._inodes)  # something was excluded
    assert compiled.total.files > 0


def test_non_utf8_directory_names_are_walked_into(
    scan_target: TreeBuilder, scan_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_target.file(b"\xff\xfe/inner/\xe9t\xe9.dat", uid=1003, size=321, atime_days=100)
    scan_target.file(b"ok/\x80.dat", uid=1003, size=5, atime_days=1)
    compiled, python = scan_both(scan_target.root, monkeypatch, old_days=30, now=scan_now)
    assert_same(compiled, python)
    assert files_only(compiled.by_uid) == scan_target.expected(30)
    assert compiled.by_uid[1003].files == 2


def test_entries_that_cannot_be_examined_are_reported_the_same_way(
    world_readable_tree: TreeBuilder, scan_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory that can be listed but not searched (mode r--): every lstat fails.

    Root is never refused, so both scans run as nobody (in forked children,
    which inherit the loop switch).
    """
    tree = world_readable_tree
    tree.file("open/seen.dat", size=10)
    for name in ("a.dat", "b.dat", "sub"):
        tree.file(f"listed-only/{name}", size=1)
    tree.dir("closed")
    tree.path("closed").chmod(0o700)
    tree.path("listed-only").chmod(0o744)  # others: read (list) but not search
    options = ScanOptions(old_days=30, now=scan_now)
    compiled = scan_as_unprivileged(tree.root, options)
    with monkeypatch.context() as patch:
        patch.setattr(walker, "COMPILED", False)
        python = scan_as_unprivileged(tree.root, options)
    assert_same(compiled, python)
    assert compiled.errors == 4  # three entries that cannot be lstat'ed, one closed directory
    assert any("listed-only/a.dat: Permission denied" in sample
               for sample in compiled.error_samples)
    assert any(sample.endswith("closed: Permission denied") for sample in compiled.error_samples)
    assert (compiled.total.files, compiled.total.bytes) == (1, 10)


def test_version_says_which_compiled_loops_are_built() -> None:
    done = subprocess.run([sys.executable, "-m", "dkmonitor", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["dkmonitor, version " + dkmonitor.__version__,
                                        "scanner: compiled", "list reader: compiled",
                                        "announce record: compiled"]


def test_a_directory_with_more_owners_than_the_loop_tracks_at_once(
    scan_target: TreeBuilder, scan_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled loop keeps up to 32 owners per directory before flushing to
    the dicts: 75 owners in one directory (and a nested one) must add up the same."""
    for index in range(150):
        scan_target.file(f"shared/f{index}.dat", uid=2000 + index % 75, size=index + 1,
                         atime_days=index % 60)
        scan_target.file(f"shared/deeper/g{index}.dat", uid=2000 + (index * 7) % 75,
                         size=3 * index, atime_days=index % 45)
    compiled, python = scan_both(scan_target.root, monkeypatch, old_days=30, now=scan_now)
    assert_same(compiled, python)
    assert files_only(compiled.by_uid) == scan_target.expected(30)
    assert len(compiled.by_uid) == 75


def test_the_compiled_basis_codes_are_the_age_rule_codes() -> None:
    """The C enum of age bases is in AGE_BASES order: AgeRule.code means one basis."""
    from dkmonitor.scan import _dirscan
    from dkmonitor.scan.age import AGE_BASES, AgeRule

    assert _dirscan.BASES == AGE_BASES
    assert [AgeRule(1, 0.0, basis).code for basis in AGE_BASES] == list(range(len(AGE_BASES)))


def _shaped_tree(scan_target: TreeBuilder, outside: Path) -> None:
    """The mixed tree plus every histogram bucket edge, depth 6, and owners of no file."""
    build_mixed_tree(scan_target, outside)
    sizes = [0, 4095, 4096, 65535, 65536, 1 << 20, (16 << 20) - 1, 16 << 20, 300 << 20,
             4 << 30, (64 << 30) - 1, 64 << 30, 70 << 30]  # sparse: no space taken
    ages = [0, 6.5, 7, 29, 30, 89, 90, 179, 180, 364, 365, 729, 730, 2000]
    for index, size in enumerate(sizes):
        scan_target.file(f"big/a{index % 3}/b/c/d/e/size{index}.dat", uid=1001 + index % 2,
                         size=size, atime_days=ages[index % len(ages)])
    for index, days in enumerate(ages):
        scan_target.file(f"ages/d{index}.dat", uid=1003, size=index + 1, atime_days=days)
    scan_target.hardlink("big/a0/b/c/d/e/size0.dat", "ages/linked.dat")
    scan_target.dir("only-dirs/x/y", uid=1500)
    os.lchown(scan_target.symlink("/nowhere", "only-dirs/x/link"), 1501, 1501)
    os.chown(scan_target.fifo("only-dirs/fifo"), 1501, 1501)


@pytest.mark.parametrize("basis", ["used", "mtime"])
@pytest.mark.parametrize("workers", [1, 3])
def test_inodes_histograms_and_top_directories(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, monkeypatch: pytest.MonkeyPatch,
    basis: str, workers: int,
) -> None:
    """Issue 14 item 1: the same walk counts inodes and directories per owner, the
    size and age histograms and the top directories; both loops and any number of
    workers give exactly the numbers of an independent lstat walk."""
    _shaped_tree(scan_target, tmp_path / "outside")
    compiled, python = scan_both(scan_target.root, monkeypatch, old_days=30, now=scan_now,
                                 age_basis=basis, workers=workers)
    assert_same(compiled, python)
    assert_census(compiled, census(scan_target.root, scan_now, 30, basis))
    assert files_only(compiled.by_uid) == scan_target.expected(30, basis)
    # owners of no regular file: root (the builder's directories), 1500 (a
    # directory), 1501 (a symlink and a fifo)
    assert set(compiled.fileless_owners) == {0, 1500, 1501}
    assert compiled.fileless_owners[1500].directories == 1
    assert compiled.fileless_owners[1501].inodes == 2  # the symlink and the fifo
    assert len(compiled.top_dirs_by_bytes) == 20
    assert max(d.depth for d in compiled.top_dirs_by_bytes) <= 3
    assert [b.label for b in compiled.size_histogram] == [
        "<4K", "<64K", "<1M", "<16M", "<256M", "<4G", "<64G", ">=64G"]
    assert [b.upper for b in compiled.age_histogram] == [7, 30, 90, 180, 365, 730, None]
    total = compiled.total
    assert sum(b.files for b in compiled.size_histogram) == total.files
    assert sum(b.bytes for b in compiled.age_histogram) == total.bytes


def test_the_compiled_buckets_are_the_documented_ones() -> None:
    from dkmonitor.scan import _dirscan
    from dkmonitor.scan.stats import AGE_EDGES_NS, SIZE_EDGES

    assert _dirscan.SIZE_EDGES == SIZE_EDGES
    assert _dirscan.AGE_EDGES_NS == AGE_EDGES_NS
