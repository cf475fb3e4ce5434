"""The announced purge end to end: real users, real files, a real SMTP server, `dkmonitor run`.

Fractional days keep it short: the notice period is shortened with `task edit`
(as an administrator would for a trial) and the test waits, on the clock,
until the date the user's list gives has passed - never for a guessed time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.fixtures.cleaning import RealUser, real_user
from tests.fixtures.cli import dkmonitor_for_users
from tests.test_notify_run import mail_settings

DAY = 86400.0
OLD = 400 * DAY


def _file(path: Path, owner: RealUser, size: int = 1000, age: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chown(path.parent, owner.uid, owner.gid)
    path.write_bytes(b"d" * size)
    os.chown(path, owner.uid, owner.gid)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def _wait_past(epoch: float) -> None:
    """Wait until the clock is past ``epoch`` (a date the run itself wrote down)."""
    while time.time() <= epoch:
        time.sleep(min(0.2, max(0.01, epoch - time.time())))


def _summary(notices: Path, user: RealUser, task: str = "scr") -> dict:
    return json.loads((notices / str(user.uid) / f"{task}.json").read_text())


def _listed(notices: Path, user: RealUser, task: str = "scr") -> list[str]:
    text = (notices / str(user.uid) / f"{task}.list").read_text()
    return [line.split("\t")[3] for line in text.splitlines() if not line.startswith("#")]


def _epoch(iso: str) -> float:
    return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


@pytest.fixture
def users() -> tuple[RealUser, RealUser]:
    return real_user("dkmann1"), real_user("dkmann2")


@pytest.fixture
def site(dkm_factory, db_url, smtp_server, open_tree):
    notices = open_tree / "notices"
    dkm = dkm_factory(db_url, mail_settings(smtp_server.port)
                      + "admin_addresses = admins@example.edu\n"
                      + f"\n[announce]\nnotice_dir = {notices}\n")
    target = open_tree / "scratch"
    target.mkdir()
    os.chmod(target, 0o755)
    return dkm, target, notices


def _mails(smtp_server, user: RealUser) -> list[str]:
    return [m.message["Subject"] for m in smtp_server.received
            if f"{user.name}@example.edu" in m.rcpt_tos]


def test_the_whole_cycle(site, users, smtp_server):
    dkm, target, notices = site
    alice, bob = users
    keep = _file(target / "a/keep.dat", alice, 5000)
    refreshed = _file(target / "a/read-again.dat", alice, 4000)
    replaced = _file(target / "a/replaced.dat", alice, 3000)
    chowned = _file(target / "a/chowned.dat", alice, 2000)
    exempted = _file(target / "b/exempt/x.dat", bob, 1000)
    bobs = _file(target / "b/plain.dat", bob, 6000)
    young = _file(target / "b/young.dat", bob, 100, age=DAY)
    created = dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
                  "--critical", "0.002", "--old-days", "30", "--delete", "--notice-days", "1",
                  "--final-notice-days", "0.5")
    assert created.returncode == 0, created.stderr

    # 1. the first run announces: lists, summaries, one notice each; nothing deleted
    first = dkm("run", "full", "scr")
    assert first.returncode == 0, first.stderr
    assert all(p.exists() for p in (keep, refreshed, replaced, chowned, exempted, bobs, young))
    assert sorted(_listed(notices, alice)) == sorted(
        str(p) for p in (keep, refreshed, replaced, chowned))
    assert sorted(_listed(notices, bob)) == sorted(str(p) for p in (exempted, bobs))
    assert [s.split(":")[0] for s in _mails(smtp_server, alice)] == ["[dkmonitor] purge notice"]
    body = next(m for m in smtp_server.received
                if f"{alice.name}@example.edu" in m.rcpt_tos).message.get_content()
    assert str(notices / str(alice.uid) / "scr.list") in body and "4 of your files" in body
    announced = _summary(notices, alice)["announced"]
    assert announced["files"] == 4 and announced["bytes"] == 14000

    # each list is its owner's alone
    own = alice.run("cat", str(notices / str(alice.uid) / "scr.list"))
    assert own.returncode == 0 and str(keep) in own.stdout
    other = bob.run("cat", str(notices / str(alice.uid) / "scr.list"))
    assert other.returncode != 0 and str(keep) not in other.stdout
    assert bob.run("ls", str(notices)).returncode != 0
    mine = alice.run(*dkmonitor_for_users(), "me", "--notice-dir", str(notices), "--format", "json")
    assert mine.returncode == 0, mine.stderr
    [seen] = json.loads(mine.stdout)
    assert seen["announced"]["files"] == 4 and seen["usage"]["old_files"] == 4
    files = alice.run(*dkmonitor_for_users(), "me", "--notice-dir", str(notices), "--files")
    assert str(keep) in files.stdout and str(bobs) not in files.stdout
    theirs = bob.run(*dkmonitor_for_users(), "me", "--notice-dir", str(notices), "--files")
    assert str(bobs) in theirs.stdout and str(keep) not in theirs.stdout

    # 2. a run before the date deletes nothing and mails nobody again
    before = dkm("run", "full", "scr")
    assert before.returncode == 0, before.stderr
    assert keep.exists() and bobs.exists() and len(smtp_server.received) == 2

    # 3. the final reminder goes out once (window opens 0.864 s after the first notice)
    assert dkm("task", "edit", "scr", "--final-notice-days", "0.99999").returncode == 0
    _wait_past(_epoch(announced["first_notice_at"]) + 2)
    reminded = dkm("run", "full", "scr")
    assert reminded.returncode == 0, reminded.stderr
    assert [s.split(":")[0] for s in _mails(smtp_server, alice)] == [
        "[dkmonitor] purge notice", "[dkmonitor] final reminder"]
    assert _summary(notices, alice)["announced"]["final_notice_at"] is not None
    again = dkm("run", "full", "scr")
    assert again.returncode == 0 and len(_mails(smtp_server, alice)) == 2
    assert keep.exists()

    # 4. in between: read again (atime only), replaced, chowned, exempted, edited list
    now = time.time()
    os.utime(refreshed, (now, refreshed.stat().st_mtime))
    replaced.unlink()
    _file(replaced, alice, 3000)  # a new inode, old again
    os.chown(chowned, bob.uid, bob.gid)
    assert dkm("exempt", "add", "scr", "--path", str(exempted.parent), "--until", "2099-01-01",
               "--reason", "thesis").returncode == 0
    sneaky = _file(target / "a/never-announced.dat", alice, 7000)
    own_list = notices / str(alice.uid) / "scr.list"
    alice.run("chmod", "u+w", str(own_list))
    edited = alice.run("sh", "-c", f"printf '7000\t2020-01-01T00:00:00Z\t2020-01-01T00:00:00Z"
                                   f"\t{sneaky}\n' >> {own_list}")
    assert edited.returncode == 0, edited.stderr

    # 5. after the date: only announced, unchanged files go
    assert dkm("task", "edit", "scr", "--notice-days", "0.00002",
               "--final-notice-days", "0.00001").returncode == 0
    _wait_past(_epoch(announced["first_notice_at"]) + 4)
    purge = dkm("run", "full", "scr")
    assert purge.returncode == 0, purge.stderr
    assert not keep.exists() and not bobs.exists()  # announced, unchanged: deleted
    for spared in (refreshed, replaced, chowned, exempted, young, sneaky):
        assert spared.exists(), spared
    # the spared old files are announced now, from today
    listed = _listed(notices, alice)
    assert str(replaced) in listed and str(sneaky) in listed and str(keep) not in listed
    deleted = [m for m in smtp_server.received if f"{alice.name}@example.edu" in m.rcpt_tos][-1]
    assert "have been deleted" in deleted.message.get_content()


def test_an_unannounced_old_file_goes_only_over_emergency(site, users, smtp_server):
    dkm, target, notices = site
    alice, _bob = users
    old = _file(target / "old.dat", alice, 8000)
    args = ("--target", str(target), "--warning", "0.001", "--critical", "0.002",
            "--old-days", "30", "--delete", "--notice-days", "1")
    assert dkm("task", "create", "calm", *args, "--emergency", "100").returncode == 0
    calm = dkm("run", "full", "calm")
    assert calm.returncode == 0, calm.stderr
    assert old.exists()  # announced, not due; the disk is not over 100%

    assert dkm("task", "create", "scr", *args, "--emergency", "0.003").returncode == 0
    dry = dkm("run", "full", "scr", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "emergency" in dry.stdout and "would announce" in dry.stdout and old.exists()
    hot = dkm("run", "full", "scr")
    assert hot.returncode == 0, hot.stderr
    assert not old.exists()
    notice = [m for m in smtp_server.received if f"{alice.name}@example.edu" in m.rcpt_tos][-1]
    assert "had not been announced to you beforehand" in notice.message.get_content()
    [admins] = [m for m in smtp_server.received if "admins@example.edu" in m.rcpt_tos]
    assert "task scr: emergency purge" in admins.message.get_content()
    assert "1 unannounced files (8000 bytes) of 1 users" in admins.message.get_content()


def test_dry_run_shows_what_would_be_announced_and_changes_nothing(site, users, smtp_server):
    dkm, target, notices = site
    alice, bob = users
    _file(target / "a.dat", alice, 3000)
    _file(target / "b.dat", bob, 2000)
    assert dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
               "--critical", "0.002", "--old-days", "30", "--delete",
               "--notice-days", "1").returncode == 0
    dry = dkm("run", "full", "scr", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would announce 2 old files" in dry.stdout
    assert f"{alice.name}: 1 file" in dry.stdout and f"{bob.name}: 1 file" in dry.stdout
    assert not notices.exists() and smtp_server.received == []
    assert not (dkm.state_dir / "announce").exists()
    real = dkm("run", "full", "scr")
    assert real.returncode == 0, real.stderr
    assert _listed(notices, alice) == [str(target / "a.dat")]


def test_admins_hear_of_files_read_only_to_dodge_the_purge(site, users, smtp_server):
    dkm, target, notices = site
    alice, bob = users
    dodged = [_file(target / f"a/f{n}.dat", alice, 100 + n) for n in range(12)]
    _file(target / "b/kept.dat", bob, 500)
    assert dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
               "--critical", "100", "--old-days", "30", "--delete",
               "--notice-days", "7").returncode == 0
    assert dkm("run", "full", "scr").returncode == 0
    assert len(_listed(notices, alice)) == 12
    now = time.time()
    for path in dodged:  # read again: atime only, the data unchanged
        os.utime(path, (now, path.stat().st_mtime))
    again = dkm("run", "full", "scr")
    assert again.returncode == 0, again.stderr
    [admins] = [m for m in smtp_server.received if "admins@example.edu" in m.rcpt_tos]
    text = admins.message.get_content()
    assert f"{alice.name}: 12 of 12 announced files were only read (atime)" in text
    assert bob.name not in text
    assert not (notices / str(alice.uid) / "scr.list").exists()  # nothing left to announce


# Any disk is under 99% here and over 0.001%: "calm" never reaches warning.
CALM = ("--warning", "99", "--critical", "99.5")


def test_clean_always_cleans_by_age_whatever_the_disk_use(site):
    dkm, target, _notices = site
    alice = real_user("dkmann1")
    old = _file(target / "old.dat", alice)
    young = _file(target / "young.dat", alice, age=DAY)
    assert dkm("task", "create", "scr", "--target", str(target), *CALM, "--old-days", "30",
               "--delete").returncode == 0
    assert dkm("run", "full", "scr").returncode == 0
    assert old.exists()  # under critical: nothing to do
    assert dkm("task", "edit", "scr", "--clean-always").returncode == 0
    run = dkm("run", "full", "scr")
    assert run.returncode == 0, run.stderr
    assert not old.exists() and young.exists()


def test_clean_always_with_notices_announces_then_acts_below_warning(site, smtp_server):
    dkm, target, notices = site
    alice = real_user("dkmann1")
    old = _file(target / "old.dat", alice, 4000)
    assert dkm("task", "create", "scr", "--target", str(target), *CALM, "--old-days", "30",
               "--delete", "--clean-always", "--notice-days", "1").returncode == 0
    first = dkm("run", "full", "scr")
    assert first.returncode == 0, first.stderr
    assert old.exists() and _listed(notices, alice) == [str(old)]  # announced, not due
    announced = _summary(notices, alice)["announced"]
    assert dkm("task", "edit", "scr", "--notice-days", "0.00002").returncode == 0
    _wait_past(_epoch(announced["first_notice_at"]) + 3)
    later = _file(target / "later.dat", alice, 1000)  # old, but never announced
    due = dkm("run", "full", "scr")
    assert due.returncode == 0, due.stderr
    assert not old.exists() and later.exists()


def test_an_announced_purge_that_moves(site, smtp_server, tmp_path):
    dkm, target, notices = site
    alice = real_user("dkmann1")
    old = _file(target / "proj/old.dat", alice, 4000)
    relocation = tmp_path / "relocated"
    relocation.mkdir()
    assert dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
               "--critical", "0.002", "--old-days", "30", "--move-to", str(relocation),
               "--notice-days", "1").returncode == 0
    assert dkm("run", "full", "scr").returncode == 0
    mail = [m for m in smtp_server.received if f"{alice.name}@example.edu" in m.rcpt_tos][-1]
    assert "announced to be moved to" in mail.message.get_content()
    assert "may be moved to" in (notices / str(alice.uid) / "scr.list").read_text()
    announced = _summary(notices, alice)["announced"]
    assert dkm("task", "edit", "scr", "--notice-days", "0.00002").returncode == 0
    _wait_past(_epoch(announced["first_notice_at"]) + 3)
    moved = dkm("run", "full", "scr")
    assert moved.returncode == 0, moved.stderr
    assert not old.exists()
    landed = list(relocation.rglob("old.dat"))
    assert len(landed) == 1 and landed[0].stat().st_uid == alice.uid
    assert time.time() - os.stat(landed[0]).st_mtime > 300 * DAY  # times kept


def test_odd_names_are_listed_escaped_and_purged_exactly(site, smtp_server):
    dkm, target, notices = site
    alice = real_user("dkmann1")
    odd = os.fsdecode(b"caf\xe9\nline\\2\t.dat")  # not UTF-8, a newline, a backslash, a tab
    old = _file(target / "d" / odd, alice, 700)
    plain = _file(target / "d" / "plain.dat", alice, 800)
    assert dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
               "--critical", "0.002", "--old-days", "30", "--delete",
               "--notice-days", "1").returncode == 0
    assert dkm("run", "full", "scr").returncode == 0
    lines = [line for line in (notices / str(alice.uid) / "scr.list").read_text("ascii")
             .splitlines() if not line.startswith("#")]
    assert len(lines) == 2  # one line per file, whatever its name holds
    shown = sorted(line.split("\t")[3] for line in lines)
    assert shown == sorted([str(plain), f"{target}/d/caf\\xe9\\x0aline\\x5c2\\x09.dat"])
    announced = _summary(notices, alice)["announced"]
    assert dkm("task", "edit", "scr", "--notice-days", "0.00002").returncode == 0
    _wait_past(_epoch(announced["first_notice_at"]) + 3)
    purge = dkm("run", "full", "scr")
    assert purge.returncode == 0, purge.stderr
    assert not os.path.lexists(old) and not plain.exists()


def test_a_list_is_rewritten_only_when_it_changes_or_its_owner_touched_it(site, users):
    dkm, target, notices = site
    alice, _bob = users
    _file(target / "a1.dat", alice)
    _file(target / "a2.dat", alice)
    assert dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
               "--critical", "100", "--old-days", "30", "--delete",
               "--notice-days", "1").returncode == 0
    listing = notices / str(alice.uid) / "scr.list"

    def run() -> os.stat_result:
        done = dkm("run", "full", "scr")
        assert done.returncode == 0, done.stderr
        return os.lstat(listing)

    first = run()
    again = run()  # nothing changed: the same file, not written again
    assert (again.st_ino, again.st_ctime_ns) == (first.st_ino, first.st_ctime_ns)
    assert sorted(_listed(notices, alice)) == [str(target / "a1.dat"), str(target / "a2.dat")]

    _file(target / "a3.dat", alice)
    grown = run()
    assert grown.st_ino != again.st_ino
    assert str(target / "a3.dat") in _listed(notices, alice)

    forged = listing.with_name("forged")  # the owner replaces their copy (their directory)
    forged.write_text("# nothing to see\n")
    os.chown(forged, alice.uid, alice.gid)
    os.chmod(forged, 0o400)
    os.replace(forged, listing)
    planted = os.lstat(listing)
    restored = run()
    assert sorted(_listed(notices, alice)) == [str(target / f"a{n}.dat") for n in (1, 2, 3)]
    # not the owner's file (grown's inode was freed by the replace: it may come back)
    assert restored.st_ino != planted.st_ino
