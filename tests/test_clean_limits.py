"""Order of cleaning, bounded selection, per-run limits, purge target, error breaker."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from dkmonitor.clean.cleaner import Cleaner
from dkmonitor.clean.select import SelectOptions, candidate_batches, iter_old_files
from dkmonitor.clean.step import clean_step
from dkmonitor.scan.disk import disk_usage
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

# name: (size, age in days) -> size x age: e=4000, c=3000, a=2000, d=1500, b=1000, f=500
FILES = {"a": (20, 100), "b": (10, 100), "c": (10, 300), "d": (30, 50), "e": (40, 100),
         "f": (5, 100)}
RANKED = ["e", "c", "a", "d", "b", "f"]


def populate(target: Path) -> None:
    for i, (name, (size, age)) in enumerate(FILES.items()):
        make_file(target / f"dir{i % 2}" / name, size=size, age_days=age, uid=1001 + i % 3)


def remaining(target: Path) -> set[str]:
    return {p.name for p in target.rglob("*") if p.is_file()}


def test_largest_and_oldest_go_first(clean_tree, clean_db):
    target = clean_tree["target"]
    populate(target)
    summary = clean_step(clean_db, make_settings(max_files_per_run=3),
                         make_run(make_task(target, delete=True)))
    assert remaining(target) == set(RANKED[3:])
    assert summary.stopped == "max_files_per_run (3) reached" and summary.error is None
    assert [os.path.basename(bytes(r.path)).decode() for r in journal(clean_db)] == RANKED[:3]


@pytest.mark.parametrize("chunk", [1, 2, 4, 100])
def test_bounded_passes_keep_the_global_order(clean_tree, chunk):
    target = clean_tree["target"]
    populate(target)
    make_file(target / "young", age_days=1)
    options = SelectOptions(target=str(target), old_days=30, now=time.time())
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        batches = list(candidate_batches(lambda: iter_old_files(fd, options), chunk))
    finally:
        os.close(fd)
    assert all(len(batch) <= chunk for batch in batches)
    assert [c.name for batch in batches for c in batch] == RANKED


def test_several_passes_clean_everything(clean_tree, clean_db):
    target = clean_tree["target"]
    populate(target)
    run = make_run(make_task(target, delete=True))
    with Cleaner.open(clean_db, make_settings(), run, chunk=2) as cleaner:
        summary = cleaner.clean()
    assert remaining(target) == set() and sum(a.files for a in summary.deleted.values()) == 6


def test_max_bytes_passes_over_files_that_do_not_fit(clean_tree, clean_db):
    target = clean_tree["target"]
    populate(target)
    # e=40 fits (40), c=10 (50), a=20 would make 70 > 60: passed over, d=30 too, b=10 (60)
    summary = clean_step(clean_db, make_settings(max_bytes_per_run=60),
                         make_run(make_task(target, delete=True)))
    assert remaining(target) == {"a", "d", "f"}
    assert summary.stopped == "max_bytes_per_run (60 bytes) reached"


def test_purge_target_stops_once_disk_use_is_low_enough(clean_tree, clean_db, tmpfs):
    target = tmpfs(clean_tree["target"], "4m")
    for i in range(12):
        make_file(target / f"f{i:02}", size=256 * 1024, age_days=100 + i)
    start = disk_usage(str(target))
    assert start.percent > 60
    task = make_task(target, delete=True, usage_warning_threshold=40,
                     usage_critical_threshold=50, purge_target_percent=45)
    summary = clean_step(clean_db, make_settings(), make_run(task, disk=start))
    left = remaining(target)
    assert disk_usage(str(target)).percent <= 45
    assert summary.stopped and "purge_target_percent" in summary.stopped
    # the oldest went first, and cleaning stopped as soon as the target was reached
    assert left == {f"f{i:02}" for i in range(len(left))}
    assert 0 < len(left) < 12
    one_more = disk_usage(str(target)).used + 256 * 1024
    assert one_more / (one_more + disk_usage(str(target)).available - 256 * 1024) * 100 > 45


def test_purge_target_on_dry_run_is_estimated(clean_tree, tmpfs):
    target = tmpfs(clean_tree["target"], "4m")
    for i in range(12):
        make_file(target / f"f{i:02}", size=256 * 1024, age_days=100 + i)
    task = make_task(target, delete=True, usage_warning_threshold=40,
                     usage_critical_threshold=50, purge_target_percent=45)
    before = snapshot(target)
    summary = clean_step(None, make_settings(),
                         make_run(task, disk=disk_usage(str(target)), dry_run=True))
    assert snapshot(target) == before
    assert 0 < summary.deleted[1001].files < 12 and "purge_target_percent" in summary.stopped


@pytest.fixture
def read_only_target(clean_tree):
    """The target bind-mounted read-only on itself: every unlink fails with EROFS."""
    target = clean_tree["target"]
    populate(target)
    for i in range(10):
        make_file(target / f"more{i}", size=5)
    steps = (["mount", "--bind", str(target), str(target)],
             ["mount", "-o", "remount,ro,bind", str(target)])
    for command in steps:
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", str(target)], capture_output=True)
            pytest.skip(f"cannot bind-mount read-only here: {proc.stderr.strip()}")
    yield target
    subprocess.run(["umount", str(target)], check=True)


def test_error_breaker_stops_the_run_with_an_error(read_only_target, clean_db):
    target = read_only_target
    settings = make_settings(max_failure_percent=50, min_actions_before_breaker=4)
    summary = clean_step(clean_db, settings, make_run(make_task(target, delete=True)))
    assert summary.error and "max_failure_percent" in summary.error
    assert summary.failed == 4 and len(remaining(target)) == 16
    rows = journal(clean_db)
    assert [r.outcome for r in rows] == ["failed"] * 4
    assert all(r.reason for r in rows)


def test_max_bytes_says_so_when_only_big_files_are_left(clean_tree, clean_db):
    target = clean_tree["target"]
    populate(target)
    summary = clean_step(clean_db, make_settings(max_bytes_per_run=12),
                         make_run(make_task(target, delete=True)))
    # e=40 passed over, c=10 fits (10), then a, d, b, f would all exceed 12
    assert remaining(target) == {"e", "a", "d", "b", "f"}
    assert summary.stopped == (
        "max_bytes_per_run (12 bytes) reached: 5 larger files left for the next run")
