"""`dkmonitor exempt ...`: stored with who and when, listed active or expired, bad input exit 2."""

from __future__ import annotations

import json
import os
import pwd
from datetime import datetime, timedelta

import pytest

from dkmonitor.clean.exemptions import ExemptRules, relative_parts
from dkmonitor.db.engine import open_database
from dkmonitor.db.exemptions import active_rules, add_exemption

NOBODY = pwd.getpwnam("nobody")
NEXT_YEAR = f"{datetime.now().year + 1}-06-30"


@pytest.fixture
def scratch(dkm, tmp_path):
    target = tmp_path / "scratch"
    target.mkdir()
    result = dkm("task", "create", "scr", "--target", str(target), "--warning", "80",
                 "--critical", "90", "--old-days", "30", "--delete")
    assert result.returncode == 0, result.stderr
    return target


def _db_url(dkm) -> str:
    for line in dkm.config.read_text().splitlines():
        if line.startswith("url = "):
            return line.split(" = ", 1)[1]
    raise AssertionError("no url in the test settings")


def test_add_list_remove(dkm, scratch):
    added = dkm("exempt", "add", "scr", "--user", "nobody", "--until", NEXT_YEAR,
                "--reason", "thesis deadline", env={"SUDO_USER": "carol"})
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("exemption 1: user nobody in task scr until ")
    sub = scratch / "keep"
    path_added = dkm("exempt", "add", "scr", "--path", f"{sub}/../keep/", "--until",
                     f"{NEXT_YEAR}T12:30", "--reason", "reference data")
    assert path_added.returncode == 0, path_added.stderr

    listed = json.loads(dkm("exempt", "list", "scr", "--format", "json").stdout)
    assert [(e["id"], e["username"], e["path"]) for e in listed] == [
        (1, "nobody", None), (2, None, str(sub))]
    assert listed[0]["created_by"] == "carol" and listed[0]["reason"] == "thesis deadline"
    assert listed[0]["expired"] is False
    # a bare date covers the whole day: local midnight at the end of it
    expires = datetime.fromisoformat(listed[0]["expires_at"]).astimezone()
    assert (expires.year, expires.month, expires.day, expires.hour) == (
        datetime.now().year + 1, 7, 1, 0)
    table = dkm("exempt", "list").stdout
    assert "thesis deadline" in table and "active" in table and f"path {sub}" in table

    removed = dkm("exempt", "remove", "1")
    assert removed.returncode == 0 and "removed exemption 1: user nobody" in removed.stdout
    assert [e["id"] for e in json.loads(dkm("exempt", "list", "--format", "json").stdout)] == [2]


@pytest.mark.parametrize(
    "args, words",
    [
        (["nosuch", "--user", "nobody", "--reason", "r"], "no such task"),
        (["scr", "--reason", "r"], "exactly one of --user NAME or --path PATH"),
        (["scr", "--user", "nobody", "--path", "/x", "--reason", "r"], "exactly one of"),
        (["scr", "--user", "no-such-user-here", "--reason", "r"], "no such user"),
        (["scr", "--path", "/etc", "--reason", "r"], "not under the task's target"),
        (["scr", "--path", "relative/dir", "--reason", "r"], "must be absolute"),
        (["scr", "--user", "nobody", "--reason", "  "], "--reason must say why"),
    ],
)
def test_bad_input_is_one_line_exit_2(dkm, scratch, args, words):
    result = dkm("exempt", "add", *args, "--until", NEXT_YEAR)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_past_or_malformed_dates_and_unknown_ids(dkm, scratch):
    past = dkm("exempt", "add", "scr", "--user", "nobody", "--until", "2001-01-01",
               "--reason", "r")
    assert past.returncode == 2 and "not in the future" in past.stderr
    garbled = dkm("exempt", "add", "scr", "--user", "nobody", "--until", "soon", "--reason", "r")
    assert garbled.returncode == 2 and "--until" in garbled.stderr
    missing = dkm("exempt", "remove", "99")
    assert missing.returncode == 2 and "no exemption 99" in missing.stderr


def test_expired_exemptions_are_listed_and_stop_applying(dkm, scratch):
    database = open_database(_db_url(dkm))
    then = datetime(2020, 1, 1)
    try:
        with database.session() as session:
            add_exemption(session, "scr", user="nobody", path=None, reason="old",
                          expires_at=then + timedelta(days=1), created_by="x", now=then)
            add_exemption(session, "scr", user=None, path=str(scratch / "a"), reason="lasting",
                          expires_at=datetime(2999, 1, 1), created_by="x", now=then)
        with database.session() as session:
            rules = active_rules(session, "scr", str(scratch), datetime.now())
    finally:
        database.dispose()
    assert rules == ExemptRules(uids=frozenset(), subtrees=frozenset({("a",)}))
    listed = json.loads(dkm("exempt", "list", "--format", "json").stdout)
    assert [e["expired"] for e in listed] == [True, False]
    assert "expired" in dkm("exempt", "list", "scr").stdout


def test_rules_match_whole_components():
    rules = ExemptRules(uids=frozenset({NOBODY.pw_uid}), subtrees=frozenset({("ab", "c")}))
    assert rules.covers(NOBODY.pw_uid, ("anything",))
    assert rules.covers(0, ("ab", "c")) and rules.covers(0, ("ab", "c", "d", "f.dat"))
    assert not rules.covers(0, ("ab", "cd", "f.dat")) and not rules.covers(0, ("ab",))
    assert not ExemptRules() and rules
    assert relative_parts("/scratch", "/scratch/x/y") == ("x", "y")
    assert relative_parts("/scratch", "/scratchy/x") is None


def test_exempt_files_are_counted_but_never_deleted(dkm, tmp_path):
    """A real run over critical: only the unexempted old file goes; all four are counted."""
    target = tmp_path / "crit"
    (target / "keep").mkdir(parents=True)
    (target / "other").mkdir()
    old = datetime.now().timestamp() - 400 * 86400
    files = {
        "keep/root.dat": 0,  # exempt by path
        "other/nobody.dat": NOBODY.pw_uid,  # exempt by user
        "other/root.dat": 0,  # the only one to go
        "other/kept-until-expiry.dat": NOBODY.pw_uid,
    }
    for name, uid in files.items():
        path = target / name
        path.write_bytes(b"z" * 100)
        os.chown(path, uid, 0)
        os.utime(path, (old, old))
    created = dkm("task", "create", "crit", "--target", str(target), "--warning", "0.001",
                  "--critical", "0.002", "--old-days", "30", "--delete")
    assert created.returncode == 0, created.stderr
    for args in (["--user", "nobody"], ["--path", str(target / "keep")]):
        added = dkm("exempt", "add", "crit", *args, "--until", NEXT_YEAR, "--reason", "r")
        assert added.returncode == 0, added.stderr

    run = dkm("run", "full", "crit")
    assert run.returncode == 0, run.stderr
    left = sorted(str(p.relative_to(target)) for p in target.rglob("*.dat"))
    assert left == ["keep/root.dat", "other/kept-until-expiry.dat", "other/nobody.dat"]
    [whole] = json.loads(dkm("view", "system", os.uname().nodename, "--format", "json").stdout)
    assert whole["files"] == 4 and whole["old_files"] == 4  # exempt files still count
