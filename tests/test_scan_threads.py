"""Walker threads per MPI rank (dkmonitor/scan/threaded.py) give one process's numbers.

``walk_over_mpi`` takes any executor, so these run the MPI hand-out with a
thread pool standing in for the ranks (tests/test_scan_mpi.py runs the real
``mpirun``): several threads per "rank", tasks that give work back after no
time at all, a thread that fails, and the thread count's setting.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dkmonitor.config import load_settings
from dkmonitor.scan import ScanOptions, mpi, scan_tree, threaded, walker
from tests.fixtures.cli import Dkm
from tests.fixtures.tree import TreeBuilder, files_only
from tests.test_scan_parallel import assert_same, build_mixed_tree

pytestmark = pytest.mark.usefixtures("requires_root")


def walk_with_pool(root: Path, options: ScanOptions, ranks: int) -> object:
    with ThreadPoolExecutor(ranks) as executor:
        return scan_tree(str(root), options, pool=mpi.ScanPool(executor, ranks))


def threaded_options(options: ScanOptions, threads: int) -> ScanOptions:
    return ScanOptions(options.age, threads_per_rank=threads)


@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("task_seconds", [0.0, 60.0])
def test_threads_per_rank_give_the_numbers_of_one_process(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, monkeypatch: pytest.MonkeyPatch,
    threads: int, task_seconds: float,
) -> None:
    """Hard links across subtrees count once, every owner's totals exact, whether a
    task walks everything (60 s) or gives work back after each directory (0 s)."""
    build_mixed_tree(scan_target, tmp_path / "outside")
    options = ScanOptions(old_days=30, now=scan_now)
    single = scan_tree(str(scan_target.root), options)
    assert files_only(single.by_uid) == scan_target.expected(30, "used")
    monkeypatch.setattr(mpi, "TASK_SECONDS", task_seconds)
    for ranks in (1, 3):
        result = walk_with_pool(scan_target.root, threaded_options(options, threads), ranks)
        assert_same(result, single)  # type: ignore[arg-type]
        assert result.top_dirs_by_bytes == single.top_dirs_by_bytes  # type: ignore[attr-defined]
        assert result.size_histogram == single.size_histogram  # type: ignore[attr-defined]


def test_threads_with_the_python_loop_give_the_numbers_of_one_process(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback loop (no compiler at install time) shares the threads as well."""
    build_mixed_tree(scan_target, tmp_path / "outside")
    options = ScanOptions(old_days=30, now=scan_now)
    single = scan_tree(str(scan_target.root), options)
    monkeypatch.setattr(walker, "COMPILED", False)
    monkeypatch.setattr(mpi, "TASK_SECONDS", 0.0)
    assert not walker.Walker(walker.WalkConfig.build(
        str(scan_target.root), 0, options)).compiled
    result = walk_with_pool(scan_target.root, threaded_options(options, 3), 2)
    assert_same(result, single)  # type: ignore[arg-type]


def test_the_compiled_loop_lets_other_threads_run_while_it_reads(
    scan_target: TreeBuilder,
) -> None:
    """Another thread runs Python in the middle of one ``scan_dir`` call.

    The call pushes the directory's 20,000 subdirectories on ``stack``. A
    loop holding Python's lock through the whole directory (as before) lets
    another thread see the stack only empty or full; this one releases it
    around every chunk of readdir and lstat calls (128 entries), so the other
    thread sees it part-filled (the switch interval is set short, so over 157
    chunks it gets in).
    """
    if not walker.COMPILED:
        pytest.skip("the compiled scanner is not built here")
    from dkmonitor.scan import _dirscan

    big = scan_target.root / "big"
    big.mkdir()
    for index in range(20_000):
        (big / f"d{index}").mkdir()
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    stop = threading.Event()
    stack: list[object] = []
    seen: set[int] = set()

    def watch() -> None:
        while not stop.is_set():
            seen.add(len(stack))

    other = threading.Thread(target=watch)
    other.start()
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pushed = _dirscan.scan_dir(fd, None, stack, {}, {}, [0] * 30, "big",
                                   os.stat(big).st_dev, True, 0, 0, 0.0, 1e9, None)[0]
    finally:
        os.close(fd)
        stop.set()
        other.join()
        sys.setswitchinterval(previous)
    assert pushed == len(stack) == 20_000
    assert seen - {0, 20_000}, "no other thread ran during the call"


def _ident(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def test_a_failing_thread_fails_the_task_and_stops_the_others(
    scan_target: TreeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for top in range(8):
        for index in range(20):
            scan_target.file(f"t{top}/d{index}/f", size=1)
    root = str(scan_target.root)
    config = walker.WalkConfig.build(root, os.stat(root).st_dev,
                                     ScanOptions(old_days=1, now=0.0))
    real_open = walker.Walker._open

    def open_or_fail(self: walker.Walker, node: walker.Dir) -> int:
        if node.name == "d7":
            raise RuntimeError("disk on fire")
        return real_open(self, node)

    monkeypatch.setattr(walker.Walker, "_open", open_or_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        threaded.walk_threads(config, [(root, *_ident(root))], 60.0, 4)


@pytest.mark.parametrize("raw", ["0", "33", "four", "-1", "2.5"])
def test_a_bad_thread_count_is_one_clear_line_and_exit_2(
    dkm_factory: Callable[..., Dkm], tmp_path: Path, raw: str
) -> None:
    """[scan] threads_per_rank is checked with the rest of the settings, before any run."""
    dkm = dkm_factory(extra=f"[scan]\nthreads_per_rank = {raw}\n")
    done = dkm("run", "path", str(tmp_path))
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "[scan] threads_per_rank" in line, line
    assert str(dkm.config) in line and "Traceback" not in done.stderr


def test_the_thread_count_default_and_setting(tmp_path: Path) -> None:
    config = tmp_path / "settings.cfg"
    config.write_text("[scan]\nthreads_per_rank = 12\n")
    assert load_settings(str(config), environ={}).scan.threads_per_rank == 12
    config.write_text("")
    assert load_settings(str(config), environ={}).scan.threads_per_rank == 4
