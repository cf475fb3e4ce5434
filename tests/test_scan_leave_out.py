"""dkmonitor's own directories are left out of a scan that contains them (issue 11, item 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dkmonitor.scan import ScanOptions, scan_tree, walker
from tests.fixtures.tree import TreeBuilder

pytestmark = pytest.mark.usefixtures("requires_root")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("workers", [1, 2])
def test_state_and_log_directories_are_left_out(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float,
    monkeypatch: pytest.MonkeyPatch, compiled: bool, workers: int,
) -> None:
    if compiled and not walker.COMPILED:
        pytest.skip("the compiled scanner is not built here")
    monkeypatch.setattr(walker, "COMPILED", compiled)
    scan_target.file("home/data.dat", size=100)
    scan_target.file("home/.dkmonitor/dkmonitor.db", size=5000)
    scan_target.file("home/.dkmonitor/log/dkmonitor.log", size=700)
    scan_target.file("var/log/dkm/run.log", size=30)
    spelled_otherwise = tmp_path / "state-link"
    spelled_otherwise.symlink_to(scan_target.path("home/.dkmonitor"))
    options = ScanOptions(old_days=90, now=scan_now, workers=workers, leave_out=(
        str(spelled_otherwise), str(scan_target.path("var/log/dkm")), "/nonexistent/x"))
    result = scan_tree(str(scan_target.root), options)
    assert (result.total.files, result.total.bytes) == (1, 100)
    assert result.left_out == (str(spelled_otherwise), str(scan_target.path("var/log/dkm")))
    assert result.errors == 0


def test_nothing_said_when_they_are_elsewhere(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    scan_target.file("data.dat", size=10)
    (tmp_path / "state").mkdir()
    result = scan_tree(str(scan_target.root), ScanOptions(
        old_days=90, now=scan_now, leave_out=(str(tmp_path / "state"),)))
    assert (result.total.bytes, result.left_out) == (10, ())


def test_the_target_itself_is_scanned_when_asked_for(
    scan_target: TreeBuilder, scan_now: float
) -> None:
    scan_target.file("db.dat", size=10)
    result = scan_tree(str(scan_target.root), ScanOptions(
        old_days=90, now=scan_now, leave_out=(os.fspath(scan_target.root),)))
    assert (result.total.bytes, result.left_out) == (10, ())


def test_run_path_over_its_own_state_directory_is_stable(dkm_sqlite) -> None:  # type: ignore[no-untyped-def]
    """The real command: a home holding dkmonitor's state (database, logs) scans
    the same twice, and says once per run what it left out."""
    home = dkm_sqlite.state_dir.parent
    (home / "work.dat").write_bytes(b"w" * 1234)
    outputs = []
    for _ in range(2):
        result = dkm_sqlite("run", "path", str(home), "--old-days", "90")
        assert result.returncode == 0, result.stderr
        outputs.append([line for line in result.stdout.splitlines() if "TOTAL" in line])
    assert outputs[0] == outputs[1] and outputs[0]
    log_text = "".join(p.read_text() for p in (dkm_sqlite.state_dir / "log").glob("*.log*"))
    assert log_text.count(f"left out {dkm_sqlite.state_dir} ") == 2
