"""``dkmonitor me`` (issue 13, item 6) and the published summary's schema and list escaping.

Root publishes for two real users (useradd); ``dkmonitor me`` then runs as
each of them, in a subprocess with a plain user's environment: each sees
exactly their own summary and list, never the other's, and needs neither the
database nor a readable settings file.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dkmonitor.announce.publish import NoticeDir, task_file
from dkmonitor.announce.summary import (
    SUMMARY_VERSION,
    dump_summary,
    escape_path,
    list_line,
    parse_list_line,
    read_summaries,
    summary_from_json,
    unescape_path,
)
from tests.fixtures.cleaning import RealUser, needs_root, real_user
from tests.fixtures.cli import dkmonitor_for_users

ODD_PATH = b"/scratch/a\nb\tc\\d \xff\xfe\x00\x7f\xc3\xa9 e"


def sample(task: str = "scratch", **changes: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "version": 1, "task": task, "hostname": "h1", "target": "/scratch",
        "scanned_at": "2026-11-30T08:00:00Z", "disk_percent": 91.2,
        "old_file_threshold_days": 30.0, "age_basis": "used",
        "usage": {"files": 10, "bytes": 123, "allocated_bytes": 4096, "old_files": 3,
                  "old_bytes": 100, "share_percent": 1.2},
        "announced": {"files": 3, "bytes": 100, "first_notice_at": "2026-11-30T08:00:00Z",
                      "earliest_purge_at": "2026-12-14T08:00:00Z", "final_notice_at": None,
                      "list": task_file(task, "list")},
        "exemptions": [{"id": 1, "user": "alice", "path": None,
                        "until": "2027-01-01T00:00:00Z", "reason": "thesis",
                        "expired": False}],
    }
    summary.update(changes)
    return summary


# --- the schema and the list format (no privileges needed) ---------------------


def test_escape_path_round_trips_every_byte_and_keeps_one_printable_line():
    text = escape_path(ODD_PATH)
    assert text == "/scratch/a\\x0ab\\x09c\\x5cd \\xff\\xfe\\x00\\x7f\\xc3\\xa9 e"
    assert text.isascii() and text.isprintable()
    assert unescape_path(text) == ODD_PATH
    every = bytes(range(256))
    assert unescape_path(escape_path(every)) == every
    assert escape_path(b"/plain/path with spaces") == "/plain/path with spaces"


@pytest.mark.parametrize("bad", ["a\\q", "a\\x4", "a\\xg0", "tab\there", "é", "end\\"])
def test_unescape_path_refuses_what_escape_path_cannot_have_written(bad):
    with pytest.raises(ValueError):
        unescape_path(bad)


def test_a_list_line_round_trips():
    line = list_line(1234, "2026-01-01T00:00:00Z", "2026-12-14T08:00:00Z", ODD_PATH)
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and line.count(b"\t") == 3
    entry = parse_list_line(line.decode("ascii"))
    assert entry is not None
    assert entry == (1234, "2026-01-01T00:00:00Z", "2026-12-14T08:00:00Z", ODD_PATH)
    assert parse_list_line("# a comment\n") is None
    with pytest.raises(ValueError):
        parse_list_line("12\tonly three\tfields\n")


def test_the_summary_schema_is_checked():
    good = sample()
    assert summary_from_json(copy.deepcopy(good)) == good
    assert summary_from_json(sample(announced=None))["announced"] is None
    assert json.loads(dump_summary(summary_from_json(sample()))) == good
    assert SUMMARY_VERSION == 1
    broken = [
        sample(version=2),
        {k: v for k, v in sample().items() if k != "usage"},
        sample(disk_percent="91"),
        sample(usage={**good["usage"], "files": True}),
        sample(announced={**good["announced"], "list": "../../etc/passwd"}),
        sample(exemptions=[{"id": 1}]),
        ["not", "an", "object"],
    ]
    for value in broken:
        with pytest.raises(ValueError):
            summary_from_json(value)


def test_read_summaries_skips_what_is_not_a_summary_and_says_so(tmp_path):
    (tmp_path / "b.json").write_bytes(dump_summary(sample("b")))  # type: ignore[arg-type]
    (tmp_path / "a.json").write_bytes(dump_summary(sample("a")))  # type: ignore[arg-type]
    (tmp_path / "new.json").write_text(json.dumps(sample("new", version=2)))
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / ".a.json.0123.tmp").write_text("{half")
    (tmp_path / "a.list").write_text("# not a summary\n")
    problems: list[str] = []
    found = read_summaries(tmp_path, problems)
    assert [s["task"] for s in found] == ["a", "b"]
    assert len(problems) == 2
    assert any("junk.json: skipped" in p for p in problems)
    assert any("new.json: skipped: summary version 2" in p for p in problems)


# --- dkmonitor me as real users ---------------------------------------------------


@pytest.fixture
def people() -> tuple[RealUser, RealUser]:
    return real_user("dkmnote1"), real_user("dkmnote2")


def me_as(user: RealUser, *args: str, config: Path | None = None
          ) -> subprocess.CompletedProcess[str]:
    """``dkmonitor [--config FILE] me ARGS`` as ``user``, with a plain user's environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8", "TZ": "UTC"}
    head = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
         *dkmonitor_for_users(), *head, "me", *args],
        capture_output=True, text=True, cwd="/", env=env, timeout=120,
    )


@pytest.fixture
def published(open_tree, people) -> dict[str, Any]:
    """Root publishes a summary and a list for each of the two users."""
    alice, bob = people
    notices = open_tree / "notices"
    mine = [sample("scratch"), sample("path:/data/x", announced=None, exemptions=[])]
    mine[0]["exemptions"].append({"id": 7, "user": None, "path": "/scratch/old",
                                  "until": "2026-01-01T00:00:00Z", "reason": "done",
                                  "expired": True})
    theirs = sample("scratch", target="/scratch-bob-only",
                    usage={"files": 777777, "bytes": 99, "allocated_bytes": 99,
                           "old_files": 5, "old_bytes": 5, "share_percent": 55.5},
                    exemptions=[{"id": 2, "user": "bob", "path": None,
                                 "until": "2027-01-01T00:00:00Z", "reason": "bob-secret",
                                 "expired": False}])
    lines = [b"# dkmonitor announced purge: task scratch\n",
             list_line(100, "2026-01-01T00:00:00Z", "2026-12-14T08:00:00Z", ODD_PATH)]
    with NoticeDir.open(notices) as out:
        for user, summaries, listed in ((alice, mine, b"/scratch/alice-file"),
                                        (bob, [theirs], b"/scratch/bob-private-file")):
            for summary in summaries:
                out.write(user.uid, user.gid, task_file(summary["task"], "json"),
                          [dump_summary(summary)])  # type: ignore[arg-type]
            out.write(user.uid, user.gid, task_file("scratch", "list"),
                      iter([*lines, list_line(5, "x", "y", listed)]))
    return {"dir": notices, "alice": mine, "bob": [theirs]}


@needs_root
def test_me_shows_a_user_exactly_their_own_summary(published, people):
    alice, bob = people
    notices = str(published["dir"])
    table = me_as(alice, "--notice-dir", notices)
    assert table.returncode == 0, table.stderr
    assert table.stderr == ""
    out = table.stdout
    assert "task scratch: /scratch on h1, scanned 2026-11-30 08:00 UTC" in out
    assert "10 files, 123 B" in out and "1.2% of the file system" in out
    assert "3 files, 100 B (by last use, older than 30 days)" in out
    assert "purge from      2026-12-14 08:00 UTC" in out
    assert "not sent yet" in out
    assert f"{notices}/{alice.uid}/scratch.list" in out
    assert "task path:/data/x" in out and "nothing: none of your files is due" in out
    assert "thesis" in out and "expired" in out and "path /scratch/old" in out
    for secret in ("scratch-bob-only", "777,777", "bob-secret", "bob-private"):
        assert secret not in out
    as_json = me_as(alice, "--notice-dir", notices, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == sorted(published["alice"], key=lambda s: s["task"])
    theirs = me_as(bob, "--notice-dir", notices, "--format", "json")
    assert json.loads(theirs.stdout) == published["bob"]


@needs_root
def test_me_files_streams_the_users_own_list(published, people):
    alice, bob = people
    done = me_as(alice, "--notice-dir", str(published["dir"]), "--files")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# task scratch: /scratch on h1, 3 files, 100 B, may be purged")
    assert lines[1] == "# dkmonitor announced purge: task scratch"
    assert parse_list_line(lines[2]) == (100, "2026-01-01T00:00:00Z",
                                         "2026-12-14T08:00:00Z", ODD_PATH)
    assert lines[3].endswith("\t/scratch/alice-file") and len(lines) == 4
    assert "bob-private" not in done.stdout
    assert "bob-private" in me_as(bob, "--notice-dir", str(published["dir"]), "--files").stdout
    only = me_as(alice, "--notice-dir", str(published["dir"]), "--files", "--task",
                 "path:/data/x")
    assert only.returncode == 0 and only.stdout.startswith("nothing announced for you")
    mixed = me_as(alice, "--notice-dir", str(published["dir"]), "--files", "--format", "json")
    assert mixed.returncode == 2 and "drop --format json" in mixed.stderr


@needs_root
def test_me_task_limits_to_one_task(published, people):
    alice, _bob = people
    done = me_as(alice, "--notice-dir", str(published["dir"]), "--task", "path:/data/x",
                 "--format", "json")
    assert [s["task"] for s in json.loads(done.stdout)] == ["path:/data/x"]
    none = me_as(alice, "--notice-dir", str(published["dir"]), "--task", "other")
    assert none.returncode == 0
    assert none.stdout.startswith(f"nothing published for you (uid {alice.uid}) for task other")


@needs_root
def test_another_user_never_reaches_the_first_users_files(published, people):
    alice, bob = people
    mine = published["dir"] / str(alice.uid)
    for path in (mine / "scratch.json", mine / "scratch.list"):
        done = bob.run("cat", str(path))
        assert done.returncode != 0 and "Permission denied" in done.stderr
    assert bob.run("ls", str(published["dir"])).returncode != 0
    assert bob.run("ls", str(mine)).returncode != 0


def _settings(where: Path, mode: int, notices: Path, state: Path) -> Path:
    """Root's settings file: a root-only database and state dir, and the notice_dir."""
    config = where / "settings.cfg"
    config.write_text(f"[general]\nstate_dir = {state}\n\n"
                      f"[database]\nurl = sqlite:///{state}/dkmonitor.db\n\n"
                      f"[announce]\nnotice_dir = {notices}\n")
    os.chmod(config, mode)
    return config


@needs_root
def test_me_reads_notice_dir_from_a_readable_settings_file_and_never_the_database(
    published, people, open_tree
):
    alice, _bob = people
    state = open_tree / "state"
    state.mkdir(mode=0o700)
    (state / "dkmonitor.db").write_bytes(b"root's alone")
    os.chmod(state / "dkmonitor.db", 0o600)
    config = _settings(open_tree, 0o644, published["dir"], state)
    done = me_as(alice, "--format", "json", config=config)
    assert done.returncode == 0, done.stderr
    assert [s["task"] for s in json.loads(done.stdout)] == ["path:/data/x", "scratch"]


@needs_root
def test_me_works_when_the_settings_file_is_roots_0600(published, people, open_tree):
    alice, _bob = people
    state = open_tree / "state"
    state.mkdir(mode=0o700)
    config = _settings(open_tree, 0o600, published["dir"], state)
    assert alice.run("cat", str(config)).returncode != 0
    done = me_as(alice, "--notice-dir", str(published["dir"]), "--format", "json",
                 config=config)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 2
    # without --notice-dir: root's default place, silently (a note only under -v)
    quiet = me_as(alice, config=config)
    assert quiet.returncode == 0 and quiet.stderr == ""
    if not os.path.lexists(f"/var/lib/dkmonitor-notices/{alice.uid}"):
        assert quiet.stdout == (f"nothing published for you (uid {alice.uid}) in "
                                "/var/lib/dkmonitor-notices: no full run of an announcing "
                                "task has looked at your files yet\n")
    verbose = subprocess.run(
        ["setpriv", f"--reuid={alice.uid}", f"--regid={alice.gid}", "--clear-groups",
         *dkmonitor_for_users(), "-v", "--config", str(config), "me"],
        capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert verbose.returncode == 0
    assert "note: settings not used" in verbose.stderr and "Permission denied" in verbose.stderr
    assert "Traceback" not in verbose.stderr


@needs_root
def test_nothing_published_is_one_clear_line_and_exit_0(open_tree, people):
    alice, _bob = people
    with NoticeDir.open(open_tree / "notices"):
        pass
    done = me_as(alice, "--notice-dir", str(open_tree / "notices"))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == (f"nothing published for you (uid {alice.uid}) in "
                           f"{open_tree / 'notices'}: no full run of an announcing task has "
                           "looked at your files yet\n")


@needs_root
def test_an_unreadable_notice_dir_is_one_line_and_exit_2(published, people):
    alice, _bob = people
    os.chmod(published["dir"], 0o700)
    done = me_as(alice, "--notice-dir", str(published["dir"]))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"dkmonitor: error: {published['dir']}/{alice.uid}: cannot "
                                  "read what was published for you: Permission denied")


@needs_root
def test_a_damaged_summary_is_a_warning_and_the_others_still_show(published, people):
    alice, _bob = people
    mine = published["dir"] / str(alice.uid)
    os.chmod(mine, 0o700)
    (mine / "broken.json").write_text("{")
    os.chown(mine / "broken.json", alice.uid, alice.gid)
    os.chmod(mine, 0o500)
    done = me_as(alice, "--notice-dir", str(published["dir"]), "--format", "json")
    assert done.returncode == 0
    assert len(json.loads(done.stdout)) == 2
    assert "warning" in done.stderr and "broken.json: skipped" in done.stderr


@needs_root
def test_the_final_reminder_and_its_date_are_shown(open_tree, people):
    alice, _bob = people
    summary = sample()
    summary["announced"]["final_notice_at"] = "2026-12-11T08:00:00Z"
    with NoticeDir.open(open_tree / "notices") as out:
        out.write(alice.uid, alice.gid, "scratch.json", [dump_summary(summary)])  # type: ignore[arg-type]
    done = me_as(alice, "--notice-dir", str(open_tree / "notices"))
    assert "final reminder  sent 2026-12-11 08:00 UTC" in done.stdout


@needs_root
def test_me_finds_roots_notices_beside_the_state_dir_a_settings_file_names(open_tree, people):
    """Only state_dir set: root's runs publish in {state_dir}-notices (the state dir is 0700)."""
    alice, _bob = people
    state = open_tree / "state"
    state.mkdir(mode=0o700)
    config = open_tree / "settings.cfg"
    config.write_text(f"[general]\nstate_dir = {state}\n")
    os.chmod(config, 0o644)
    with NoticeDir.open(open_tree / "state-notices") as out:
        out.write(alice.uid, alice.gid, "scratch.json", [dump_summary(sample())])  # type: ignore[arg-type]
    done = me_as(alice, "--format", "json", config=config)
    assert done.returncode == 0, done.stderr
    assert [s["task"] for s in json.loads(done.stdout)] == ["scratch"]


@needs_root
def test_me_files_streams_a_long_list_and_stops_quietly_at_a_closed_pipe(open_tree, people):
    alice, _bob = people
    count = 300_000
    with NoticeDir.open(open_tree / "notices") as out:
        out.write(alice.uid, alice.gid, "scratch.json", [dump_summary(sample())])  # type: ignore[arg-type]
        out.write(alice.uid, alice.gid, "scratch.list",
                  (list_line(n, "a", "b", b"/scratch/f%d" % n) for n in range(count)))
        out.write(alice.uid, alice.gid, "other.json",  # its list is missing
                  [dump_summary(sample("other"))])  # type: ignore[arg-type]
    whole = me_as(alice, "--notice-dir", str(open_tree / "notices"), "--files")
    lines = whole.stdout.splitlines()
    assert len(lines) == count + 1 and lines[-1] == f"{count - 1}\ta\tb\t/scratch/f{count - 1}"
    assert whole.returncode == 1
    assert whole.stderr == (f"dkmonitor: error: {open_tree}/notices/{alice.uid}/other.list: "
                            "cannot read the list of task other: No such file or directory\n")
    argv = ["setpriv", f"--reuid={alice.uid}", f"--regid={alice.gid}", "--clear-groups",
            *dkmonitor_for_users(), "me", "--notice-dir", str(open_tree / "notices"), "--files",
            "--task",
            "scratch"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                               env={"PATH": "/usr/bin:/bin"})
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    error = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert first.startswith(b"# task scratch:")
    assert error == b""
