"""`--from-list`: each format read from a real tree gives exactly the numbers of a walk.

The tree has several owners (chown, as root), hard links across directories,
symlinks (to a file and to a directory outside), a FIFO, names with odd bytes
(not UTF-8, spaces, ``%``, `` -- ``, a newline) and old and young files. The
find list comes from the real GNU find with the command docs/lists.md gives;
GPFS and Lustre are not on this machine, so their lists are written here from
``os.lstat`` of the same tree, following their documented formats (the
mmapplypolicy file-list format with ``ESCAPE '%/'``, lfs find's ``-printf``
directives as liblustreapi prints them). The walk is dkmonitor.scan.scan_tree.
"""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from dkmonitor.scan import ScanOptions, scan_tree
from dkmonitor.scan.fromlist import ListSource, scan_list
from dkmonitor.scan.stats import ScanResult

DAY = 86400
FIND_FORMAT = "%D %i %n %U %s %b %A@ %T@ %C@ %y %p\\0"
NEWLINE_NAME = b"new\nline.dat"


@pytest.fixture(autouse=True, params=["compiled", "pure-python"])
def list_reader(request, monkeypatch):
    """Every test reads its lists with the compiled helper (when built) and without it."""
    if request.param == "pure-python":
        monkeypatch.setenv("DKM_LIST_PURE_PYTHON", "1")


def build_tree(root: Path, now: int, newline_names: bool = True) -> Path:
    """The tree under test; every file's atime and mtime in whole seconds (lfs prints those)."""
    outside = root.parent / "outside"
    for d in (root / "a" / "deep", root / "b", root / "empty", outside / "dir"):
        d.mkdir(parents=True)
    base = os.fsencode(root)

    def add(rel: bytes, size: int, uid: int, atime_days: float, mtime_days: float) -> bytes:
        path = base + b"/" + rel
        with open(path, "wb") as handle:
            handle.write(b"x" * size)
        os.chown(path, uid, 100)
        os.utime(path, ns=(int(now - atime_days * DAY) * 10**9,
                           int(now - mtime_days * DAY) * 10**9))
        return path

    add(b"a/old.dat", 1000, 1001, 200, 300)
    add(b"a/deep/young.dat", 30000, 1001, 1, 5)
    add(b"a/\xff\xfe-latin1.dat", 100, 1001, 2, 2)
    add(b"a/with space -- and %41 percent.dat", 5000, 1002, 120, 150)
    add(b"b/read-recently.dat", 5000, 1002, 1, 400)  # old by mtime, used yesterday
    add(b"b/ghost.dat", 700, 54321, 365, 365)  # no passwd entry
    add(b"b/root.dat", 12345, 0, 95, 95)
    add(b"b/sparse-ish.dat", 0, 1002, 500, 500)
    if newline_names:
        add(b"b/" + NEWLINE_NAME, 42, 1001, 100, 100)
    linked = add(b"b/linked.dat", 2000, 1002, 100, 100)  # one inode, three names
    os.link(linked, base + b"/a/deep/linked-again.dat")
    os.link(linked, base + b"/empty/../a/linked-thrice.dat")
    (outside / "secret.dat").write_bytes(b"s" * 9999)
    os.symlink(outside / "secret.dat", root / "a" / "link-to-file")
    os.symlink(outside / "dir", root / "b" / "link-to-dir")
    os.mkfifo(root / "b" / "fifo")
    # below TOP_DIR_DEPTH: counted in the ancestor three levels down
    (root / "a" / "deep" / "d3" / "d4" / "d5").mkdir(parents=True)
    add(b"a/deep/d3/d4/d5/buried.dat", 70000, 1001, 400, 400)
    add(b"a/deep/d3/d4/shallower.dat", 3000, 1002, 10, 10)
    # owners of no regular file: a directory, a symlink
    (root / "b" / "theirs").mkdir()
    os.chown(root / "b" / "theirs", 2002, 100)
    os.symlink("nowhere", root / "b" / "theirs" / "dangling")
    os.lchown(root / "b" / "theirs" / "dangling", 2003, 100)
    return root


def walk_entries(root: Path) -> list[tuple[bytes, os.stat_result]]:
    """(path, lstat) of the root and everything below it, symlinks not followed."""
    base = os.fsencode(root)
    found = [(base, os.lstat(base))]
    for top, dirs, files in os.walk(base):
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(top, name)
            found.append((path, os.lstat(path)))
    return found


def type_letter(mode: int) -> str:
    for test, letter in ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"),
                         (stat.S_ISFIFO, "p"), (stat.S_ISSOCK, "s"), (stat.S_ISBLK, "b"),
                         (stat.S_ISCHR, "c")):
        if test(mode):
            return letter
    return "?"


def find_list(root: Path, out: Path) -> Path:
    """The real GNU find, with the documented command."""
    with open(out, "wb") as handle:
        subprocess.run(["find", str(root), "-xdev", "-printf", FIND_FORMAT], stdout=handle,
                       check=True)
    return out


def lfs_list(root: Path, out: Path) -> Path:
    """What `lfs find ROOT -printf '%i %n %U %s %b %A@ %T@ %C@ %y %p\\n'` prints.

    liblustreapi prints %A@/%T@/%C@ with strftime("%s") of tv_sec: whole seconds.
    """
    with open(out, "wb") as handle:
        for path, st in walk_entries(root):
            handle.write(b"%d %d %d %d %d %d %d %d %s %s\n" % (
                st.st_ino, st.st_nlink, st.st_uid, st.st_size, st.st_blocks,
                st.st_atime_ns // 10**9, st.st_mtime_ns // 10**9, st.st_ctime_ns // 10**9,
                type_letter(st.st_mode).encode(), path))
    return out


def gpfs_time(ns: int) -> str:
    """VARCHAR(timestamp) of the policy engine: 'YYYY-MM-DD HH:MM:SS.ffffff', UTC."""
    moment = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ns % 10**9 // 1000:06d}"


def gpfs_list(root: Path, out: Path) -> Path:
    """An mmapplypolicy -I defer LIST file from the rule in docs/lists.md (ESCAPE '%/').

    ``InodeNumber GenNumber SnapId [ShowArgs] -- FullPathToFile``; with ESCAPE
    '%/' every byte outside RFC 3986's unreserved set, and not '/', is %XX, in
    the path and in the SHOW string alike.
    """
    with open(out, "wb") as handle:
        for path, st in walk_entries(root):
            show = "|".join((str(st.st_uid), str(st.st_size), str(st.st_blocks // 2),
                             str(st.st_nlink), stat.filemode(st.st_mode),
                             gpfs_time(st.st_atime_ns), gpfs_time(st.st_mtime_ns),
                             gpfs_time(st.st_ctime_ns)))
            line = f"{st.st_ino} 65538 0  {quote(show, safe='/')} -- {quote(path, safe='/')}\n"
            handle.write(line.encode("ascii"))
    return out


WRITERS = {"find": find_list, "gpfs": gpfs_list, "lfs": lfs_list}


def assert_same(listed: ScanResult, walked: ScanResult) -> None:
    """Field by field, so that a failure says which number differs."""
    assert listed.errors == 0, listed.error_samples
    assert walked.errors == 0, walked.error_samples
    assert listed.root == walked.root
    assert sorted(listed.by_uid) == sorted(walked.by_uid)
    for uid, want in walked.by_uid.items():
        got = listed.by_uid[uid]
        for name in ("files", "bytes", "allocated_bytes", "old_files", "old_bytes",
                     "age_seconds", "inodes", "directories"):
            assert getattr(got, name) == getattr(want, name), (uid, name)
    assert listed.fileless_owners == walked.fileless_owners
    assert listed.directories == walked.directories
    assert listed.total == walked.total
    assert_same_shape(listed, walked)


def assert_same_shape(listed: ScanResult, walked: ScanResult) -> None:
    """The per-target numbers: histograms, top directories, directories left out."""
    assert listed.size_histogram == walked.size_histogram
    assert listed.age_histogram == walked.age_histogram
    assert listed.top_dirs_by_bytes == walked.top_dirs_by_bytes
    assert listed.top_dirs_by_old_bytes == walked.top_dirs_by_old_bytes
    assert listed.left_out == walked.left_out


@pytest.fixture
def now() -> int:
    import time

    return int(time.time())


@pytest.mark.parametrize("list_format", ["find", "gpfs", "lfs"])
def test_each_format_gives_the_numbers_of_a_walk(tmp_path, now, list_format):
    # lfs find prints one record per line: a name with a newline cannot be in its list
    root = build_tree(tmp_path / "target", now, newline_names=list_format != "lfs")
    listing = WRITERS[list_format](root, tmp_path / f"list.{list_format}")
    options = ScanOptions(old_days=90, now=float(now))
    walked = scan_tree(str(root), options)
    listed = scan_list(ListSource(str(listing), list_format), str(root), options)
    assert_same(listed, walked)
    assert set(listed.by_uid) == {0, 1001, 1002, 54321}
    # the three names of one inode are one file
    assert listed.by_uid[1002].files == 5
    assert set(listed.fileless_owners) == {2002, 2003}
    assert listed.fileless_owners[2002].directories == 1
    assert listed.fileless_owners[2003].inodes == 1
    assert sum(bucket.files for bucket in listed.size_histogram) == listed.total.files
    paths = {d.path: d for d in listed.top_dirs_by_bytes}
    # the hard-linked file counts once, under the smallest directory it is in: a
    assert paths[f"{root}/a"].bytes == 1000 + 30000 + 100 + 5000 + 2000 + 70000 + 3000
    assert paths[f"{root}/a/deep/d3"].bytes == 73000  # d4 and d5 are below the bound
    assert max(d.depth for d in listed.top_dirs_by_bytes) == 3


@pytest.mark.parametrize("basis", ["used", "atime", "mtime", "ctime"])
def test_find_lists_follow_every_age_basis_to_the_nanosecond(tmp_path, now, basis):
    root = build_tree(tmp_path / "target", now)
    listing = find_list(root, tmp_path / "list.find")
    options = ScanOptions(old_days=90, now=float(now), age_basis=basis)
    assert_same(scan_list(ListSource(str(listing), "find"), str(root), options),
                scan_tree(str(root), options))


def test_a_file_exactly_on_the_threshold_is_judged_as_the_walk_judges_it(tmp_path, now):
    root = tmp_path / "target"
    root.mkdir()
    for index, offset_ns in enumerate((-1, 0, 1, 2_000, -2_000)):
        path = root / f"edge{index}"
        path.write_bytes(b"e")
        edge = (now - 90 * DAY) * 10**9 + offset_ns
        os.utime(path, ns=(edge, edge))
    listing = find_list(root, tmp_path / "list.find")
    options = ScanOptions(old_days=90, now=float(now))
    listed = scan_list(ListSource(str(listing), "find"), str(root), options)
    assert_same(listed, scan_tree(str(root), options))


def test_excluded_globs_leave_out_what_the_walk_leaves_out(tmp_path, now):
    root = build_tree(tmp_path / "target", now)
    options = ScanOptions(old_days=90, now=float(now), exclude=("deep", "*/b/ghost.dat"))
    listing = find_list(root, tmp_path / "list.find")
    listed = scan_list(ListSource(str(listing), "find"), str(root), options)
    walked = scan_tree(str(root), options)
    assert_same(listed, walked)
    assert 54321 not in listed.by_uid


def test_a_list_of_a_bigger_tree_counts_only_the_target(tmp_path, now):
    """A list of the whole file system: what is outside the target is reported, not counted."""
    root = build_tree(tmp_path / "target", now)
    listing = find_list(tmp_path, tmp_path.parent / f"{tmp_path.name}.find")
    options = ScanOptions(old_days=90, now=float(now))
    listed = scan_list(ListSource(str(listing), "find"), str(root), options)
    walked = scan_tree(str(root), options)
    assert listed.by_uid == walked.by_uid
    assert listed.fileless_owners == walked.fileless_owners
    assert_same_shape(listed, walked)
    outside = [p for p, _ in walk_entries(tmp_path) if not p.startswith(os.fsencode(root))]
    assert listed.errors == len(outside)
    assert "is not under the target" in listed.error_samples[0]
    assert "line 1:" in listed.error_samples[0]


@pytest.mark.parametrize("list_format", ["find", "gpfs"])
def test_directories_left_out_are_left_out_as_the_walk_leaves_them(tmp_path, now, list_format):
    """dkmonitor's own state directory inside a target: counted as an inode, not entered."""
    root = build_tree(tmp_path / "target", now)
    listing = WRITERS[list_format](root, tmp_path / f"list.{list_format}")
    state = root / "a" / "deep"
    options = ScanOptions(old_days=90, now=float(now),
                          leave_out=(str(state), str(tmp_path / "elsewhere")))
    listed = scan_list(ListSource(str(listing), list_format), str(root), options)
    walked = scan_tree(str(root), options)
    assert_same(listed, walked)
    assert listed.left_out == (str(state),)
    assert not any("deep" in d.path for d in listed.top_dirs_by_bytes)
