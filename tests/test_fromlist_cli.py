"""`dkmonitor run full TASK --from-list FILE --list-format F` through the real command.

Two tasks on the same target: one walks it, one reads GNU find's list of it;
the stored numbers (read back with `view users --format json`, which shows each
user's latest scan) must be the same. Bad
invocations are one line on stderr and exit 2.
"""

from __future__ import annotations

import gzip
import json
import time

import pytest

from tests.test_fromlist_formats import build_tree, find_list, gpfs_list


def create_task(dkm, name, target):
    result = dkm("task", "create", name, "--target", str(target), "--warning", "80",
                 "--critical", "99.9", "--old-days", "90")
    assert result.returncode == 0, result.stderr


def stored(dkm, task):
    result = dkm("view", "users", "--format", "json")
    assert result.returncode == 0, result.stderr
    keys = ("uid", "files", "bytes", "allocated_bytes", "old_files", "old_bytes", "errors",
            "target_path")
    rows = {r["uid"]: {k: r[k] for k in keys} | {"age": r["average_age_days"]}
            for r in json.loads(result.stdout) if r["task"] == task}
    assert rows
    return rows


@pytest.fixture
def target(tmp_path):
    return build_tree(tmp_path / "target", int(time.time()))


def test_a_full_run_from_a_find_list_stores_the_numbers_of_a_walk(dkm, target, tmp_path):
    create_task(dkm, "walked", target)
    create_task(dkm, "listed", target)
    listing = tmp_path / "scratch.find.gz"
    listing.write_bytes(gzip.compress(find_list(target, tmp_path / "plain").read_bytes()))
    walk = dkm("run", "full", "walked")
    assert walk.returncode == 0, walk.stderr
    walked = stored(dkm, "walked")  # `view users` shows each user's latest scan
    run = dkm("run", "full", "listed", "--from-list", str(listing), "--list-format", "find")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""  # no terminal, nothing wrong: silent, as for cron
    listed = stored(dkm, "listed")
    # the two runs' "now" differ by the seconds between them: so may the mean ages
    ages = {uid: (row.pop("age"), walked[uid].pop("age")) for uid, row in listed.items()}
    assert listed == walked
    for got, want in ages.values():
        assert got == pytest.approx(want, abs=0.01)


def test_run_path_reads_a_gpfs_list(dkm_sqlite, target, tmp_path):
    listing = gpfs_list(target, tmp_path / "dkm.list.dkmonitor")
    listed = dkm_sqlite("run", "path", str(target), "--from-list", str(listing),
                        "--list-format", "gpfs")
    assert listed.returncode == 0, listed.stderr
    walked = dkm_sqlite("run", "path", str(target), "--dry-run")
    assert walked.returncode == 0, walked.stderr
    # the table printed for the list run shows the walk's totals
    total = [line for line in walked.stdout.splitlines() if line.startswith("TOTAL")]
    assert total and total[0] in listed.stdout
    assert stored(dkm_sqlite, f"path:{target}")


def test_a_damaged_list_is_stored_with_its_error_count(dkm_sqlite, target, tmp_path):
    create_task(dkm_sqlite, "listed", target)
    listing = find_list(target, tmp_path / "list.find")
    listing.write_bytes(listing.read_bytes() + b"not a record\0")
    run = dkm_sqlite("run", "full", "listed", "--from-list", str(listing), "--list-format",
                     "find")
    assert run.returncode == 0, run.stderr
    assert "list.find line" in run.stderr and "malformed record" in run.stderr
    assert {row["errors"] for row in stored(dkm_sqlite, "listed").values()} == {1}


@pytest.mark.parametrize("args, message", [
    (["--from-list", "LIST"], "also give --list-format"),
    (["--list-format", "find"], "--list-format goes with --from-list"),
    (["--from-list", "MISSING", "--list-format", "find"], "not a readable file"),
    (["--from-list", "LIST", "--list-format", "xfs"], "'xfs' is not one of"),
])
def test_bad_invocations_are_one_line_and_exit_2(dkm_sqlite, target, tmp_path, args, message):
    create_task(dkm_sqlite, "listed", target)
    listing = find_list(target, tmp_path / "list.find")
    args = [str(listing) if a == "LIST" else str(tmp_path / "nope") if a == "MISSING" else a
            for a in args]
    result = dkm_sqlite("run", "full", "listed", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_list_is_for_exactly_one_task(dkm_sqlite, target, tmp_path):
    create_task(dkm_sqlite, "one", target)
    create_task(dkm_sqlite, "two", target)
    listing = find_list(target, tmp_path / "list.find")
    for tasks in ([], ["one", "two"]):
        result = dkm_sqlite("run", "full", *tasks, "--from-list", str(listing),
                            "--list-format", "find")
        assert result.returncode == 2, result.stderr
        assert "name exactly one TASK" in result.stderr


def test_a_list_of_another_tree_fails_the_task(dkm_sqlite, target, tmp_path):
    create_task(dkm_sqlite, "listed", target)
    other = tmp_path / "other"
    other.mkdir()
    listing = find_list(other, tmp_path / "other.find")
    run = dkm_sqlite("run", "full", "listed", "--from-list", str(listing), "--list-format",
                     "find")
    assert run.returncode == 1, run.stderr
    assert "none of its 1 record(s) is the target" in run.stderr
    assert "Traceback" not in run.stderr
