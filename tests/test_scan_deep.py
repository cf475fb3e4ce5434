"""Data deeper than PATH_MAX is counted like any other (issue 10, item 9).

A user can build a tree thousands of levels deep with fd-relative mkdir; a walk
by path would see its lower part as one unreadable entry. The tree here is
built the same way (no path is ever longer than one name) and the expected
numbers are counted while building it, independently of the scanner.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dkmonitor.scan import ScanOptions, dirfds, scan_tree, walker
from dkmonitor.scan.dirfds import Dir, DirFds, Replaced, open_checked

pytestmark = pytest.mark.usefixtures("requires_root")

DEPTH = 3100  # "d/" * 3100 is 6200 bytes: well past PATH_MAX (4096)
UIDS = (1001, 1002, 1003)


@dataclass
class DeepTree:
    root: Path
    files: dict[int, int] = field(default_factory=dict)  # uid -> files
    bytes: dict[int, int] = field(default_factory=dict)  # uid -> bytes
    directories: int = 1  # the root


def _write(dir_fd: int, name: str, size: int, uid: int, tree: DeepTree) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, b"x" * size)
        os.fchown(fd, uid, uid)
    finally:
        os.close(fd)
    tree.files[uid] = tree.files.get(uid, 0) + 1
    tree.bytes[uid] = tree.bytes.get(uid, 0) + size


@pytest.fixture(scope="module")
def deep_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeepTree]:
    """``d/d/d/...`` DEPTH levels; each level also has side directories ``s`` and ``t``
    (so the walk branches at every level and its fd budget is exercised) and every
    tenth level a file, the deepest ones far past PATH_MAX. ``s`` is made before
    ``d`` and ``t`` after it: whatever order the file system lists them in
    (hashed on ext4, newest first on tmpfs), a sibling of ``d`` is still waiting
    while the walk goes down ``d``."""
    tree = DeepTree(tmp_path_factory.mktemp("deep") / "target")
    tree.root.mkdir()
    fd = os.open(tree.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(DEPTH):
            os.mkdir("s", dir_fd=fd)
            side = os.open("s", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            try:
                _write(side, "side.dat", 1 + level % 7, UIDS[level % 3], tree)
            finally:
                os.close(side)
            if level % 10 == 0:
                _write(fd, "f.dat", 100 + level, UIDS[(level // 10) % 3], tree)
            os.mkdir("d", dir_fd=fd)
            os.mkdir("t", dir_fd=fd)
            tree.directories += 3
            deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        _write(fd, "bottom.dat", 123_456, UIDS[0], tree)
    finally:
        os.close(fd)
    yield tree
    # shutil.rmtree recurses once per level: GNU rm does not.
    subprocess.run(["rm", "-rf", "--", str(tree.root)], check=True)


def _expected(tree: DeepTree) -> dict[int, tuple[int, int]]:
    return {uid: (tree.files[uid], tree.bytes[uid]) for uid in tree.files}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("workers", [1, 3])
def test_a_tree_deeper_than_path_max_is_counted(
    deep_tree: DeepTree, scan_now: float, monkeypatch: pytest.MonkeyPatch,
    compiled: bool, workers: int,
) -> None:
    if compiled and not walker.COMPILED:
        pytest.skip("the compiled scanner is not built here")
    monkeypatch.setattr(walker, "COMPILED", compiled)
    result = scan_tree(str(deep_tree.root), ScanOptions(old_days=90, now=scan_now,
                                                        workers=workers))
    assert (result.errors, result.error_samples) == (0, [])
    assert {uid: (u.files, u.bytes) for uid, u in result.by_uid.items()} == _expected(deep_tree)
    assert result.directories == deep_tree.directories
    # every directory below the target is root's; every file counts as an inode
    assert result.fileless_owners[0].directories == deep_tree.directories - 1
    assert {uid: u.inodes for uid, u in result.by_uid.items()} == deep_tree.files


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_fds_stay_within_the_budget(
    deep_tree: DeepTree, scan_now: float, monkeypatch: pytest.MonkeyPatch, compiled: bool,
) -> None:
    """A tiny budget: evicted ancestors are reopened by name, the numbers stay exact,
    no more fds are ever held than the budget and none is left open."""
    if compiled and not walker.COMPILED:
        pytest.skip("the compiled scanner is not built here")
    monkeypatch.setattr(walker, "COMPILED", compiled)
    monkeypatch.setattr(dirfds, "FD_BUDGET", 32)
    most = 0
    real_keep = DirFds.keep

    def counting_keep(self: DirFds, node: Dir, fd: int) -> None:
        nonlocal most
        real_keep(self, node, fd)
        most = max(most, len(self._open))

    monkeypatch.setattr(DirFds, "keep", counting_keep)
    before = len(os.listdir("/proc/self/fd"))
    result = scan_tree(str(deep_tree.root), ScanOptions(old_days=90, now=scan_now))
    assert len(os.listdir("/proc/self/fd")) == before
    assert 1 < most <= 32
    assert result.errors == 0
    assert {uid: (u.files, u.bytes) for uid, u in result.by_uid.items()} == _expected(deep_tree)


def test_a_directory_swapped_while_its_fd_was_evicted_is_refused(tmp_path: Path) -> None:
    """Reopening an evicted directory by name checks every step's identity: a
    directory renamed in its place is refused, never walked."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "other" / "b").mkdir(parents=True)
    fds = DirFds(budget=2)
    root = Dir(None, str(tmp_path), *_identity(tmp_path))
    a = Dir(root, "a", *_identity(tmp_path / "a"))
    b = Dir(a, "b", *_identity(tmp_path / "a" / "b"))
    for node, parent_fd in ((root, None), (a, root), (b, a)):
        node.waiting = 1
        fds.keep(node, open_checked(None if parent_fd is None else parent_fd.fd, node))
    assert root.fd == -1  # evicted: the oldest past the budget
    fds.release(b)
    fds.release(a)
    (tmp_path / "a").rename(tmp_path / "a-moved")
    (tmp_path / "other").rename(tmp_path / "a")
    with pytest.raises(Replaced):
        fds.fd_of(b)
    fds.close_all()
    # and an unchanged chain reopens fine
    (tmp_path / "a").rename(tmp_path / "other")
    (tmp_path / "a-moved").rename(tmp_path / "a")
    assert os.fstat(fds.fd_of(b)).st_ino == b.ino
    fds.close_all()


def _identity(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino
