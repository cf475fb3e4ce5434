"""Root publishing files for users (issue 13, item 2): attacks first.

notice_dir sits where users can pass through it, and each user owns their own
directory in it: root writes where users have a hand. Real accounts (useradd)
act through setpriv; what they planted must never redirect root's write, and
nobody but the owner (and root) may read or list a user's files.
"""

from __future__ import annotations

import os
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from dkmonitor.announce import publish
from dkmonitor.announce.publish import NoticeDir, NoticeDirError, task_file
from tests.fixtures.cleaning import needs_root, real_user
from tests.fixtures.cli import python_for_users

pytestmark = needs_root


@pytest.fixture
def people():
    return real_user("dkmnote1"), real_user("dkmnote2")


@pytest.fixture
def notices(open_tree: Path) -> Path:
    return open_tree / "notices"


def _owner_mode(path: Path | str) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


# --- notice_dir itself -------------------------------------------------------


def test_notice_dir_is_created_0711_with_0755_parents_whatever_the_umask(open_tree):
    old = os.umask(0o077)
    try:
        with NoticeDir.open(open_tree / "a" / "b" / "notices") as notices:
            assert notices.path == open_tree / "a" / "b" / "notices"
    finally:
        os.umask(old)
    assert _owner_mode(open_tree / "a") == (0, 0, 0o755)
    assert _owner_mode(open_tree / "a" / "b") == (0, 0, 0o755)
    assert _owner_mode(open_tree / "a" / "b" / "notices") == (0, 0, 0o711)


def test_a_symlinked_notice_dir_is_refused(open_tree):
    real = open_tree / "real"
    real.mkdir(mode=0o711)
    (open_tree / "link").symlink_to(real)
    with pytest.raises(NoticeDirError, match=r"link: notice_dir is a symlink"):
        NoticeDir.open(open_tree / "link")


@pytest.mark.parametrize("mode", [0o775, 0o713, 0o1777])
def test_a_notice_dir_others_can_write_is_refused_not_fixed(open_tree, mode):
    directory = open_tree / "notices"
    directory.mkdir()
    os.chmod(directory, mode)
    with pytest.raises(NoticeDirError, match=r"writable by group or others.*chmod 0711"):
        NoticeDir.open(directory)
    assert _owner_mode(directory)[2] == mode


def test_a_notice_dir_owned_by_a_user_is_refused(open_tree, people):
    alice, _bob = people
    directory = open_tree / "notices"
    directory.mkdir(mode=0o711)
    os.chown(directory, alice.uid, alice.gid)
    with pytest.raises(NoticeDirError, match=rf"owned by uid {alice.uid}, not by the running"):
        NoticeDir.open(directory)


def test_a_notice_dir_that_is_a_file_is_refused(open_tree):
    (open_tree / "notices").write_text("not a directory")
    with pytest.raises(NoticeDirError, match=r"cannot open notice_dir"):
        NoticeDir.open(open_tree / "notices")


@pytest.mark.parametrize("exists", [True, False])
def test_a_notice_dir_in_a_users_directory_is_refused(open_tree, people, exists):
    """The user could rename it away and put their own tree in its place."""
    alice, _bob = people
    home = open_tree / "alice"
    home.mkdir(mode=0o755)
    os.chown(home, alice.uid, alice.gid)
    if exists:
        (home / "notices").mkdir(mode=0o711)
    with pytest.raises(NoticeDirError, match=r"unsafe|cannot create notice_dir there"):
        NoticeDir.open(home / "notices" / "sub")
    assert not os.path.lexists(home / "notices" / "sub")


def test_a_root_notice_dir_others_could_list_is_brought_to_0711(open_tree, people):
    directory = open_tree / "notices"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    with NoticeDir.open(directory):
        pass
    assert _owner_mode(directory) == (0, 0, 0o711)
    alice, _bob = people
    assert alice.run("ls", str(directory)).returncode != 0


# --- users' directories and files ----------------------------------------------


def test_a_published_file_is_the_users_0400_in_their_0500_dir_and_closed_to_others(
    notices, people
):
    alice, bob = people
    with NoticeDir.open(notices) as published:
        path = published.write(alice.uid, alice.gid, "scratch.json", iter([b"hel", b"lo\n"]))
        published.write(bob.uid, bob.gid, "scratch.json", [b"bob\n"])
    assert path == f"{notices}/{alice.uid}/scratch.json"
    assert _owner_mode(path) == (alice.uid, alice.gid, 0o400)
    assert _owner_mode(notices / str(alice.uid)) == (alice.uid, alice.gid, 0o500)
    assert alice.run("cat", path).stdout == "hello\n"
    assert alice.run("ls", str(notices / str(alice.uid))).stdout.split() == ["scratch.json"]
    # the other user can neither read it, nor list it, nor list notice_dir
    assert bob.run("cat", path).returncode != 0
    assert bob.run("ls", str(notices / str(alice.uid))).returncode != 0
    assert bob.run("ls", str(notices)).returncode != 0
    assert alice.run("ls", str(notices)).returncode != 0
    assert bob.run("cat", f"{notices}/{bob.uid}/scratch.json").stdout == "bob\n"


def test_users_cannot_plant_or_swap_entries_of_notice_dir(notices, people):
    alice, bob = people
    with NoticeDir.open(notices) as published:
        published.write(alice.uid, alice.gid, "scratch.json", [b"x\n"])
    assert bob.run("ln", "-s", "/etc", str(notices / str(bob.uid))).returncode != 0
    assert bob.run("mkdir", str(notices / str(bob.uid))).returncode != 0
    assert alice.run("mv", str(notices / str(alice.uid)), str(notices / "moved")).returncode != 0
    assert not os.path.lexists(notices / str(bob.uid))


@pytest.fixture
def fake_etc(open_tree: Path) -> Path:
    """A root-owned 0755 stand-in for /etc.

    Symlinks in these tests point here, not at the real /etc: a broken build
    would otherwise chown or fill the test machine's /etc.
    """
    etc = open_tree / "etc"
    etc.mkdir(mode=0o755)
    os.chmod(etc, 0o755)
    (etc / "passwd").write_bytes(b"root:x:0:0\n")
    os.chmod(etc / "passwd", 0o644)
    return etc


def _unchanged_etc(etc: Path) -> bool:
    return (os.listdir(etc) == ["passwd"] and _owner_mode(etc) == (0, 0, 0o755)
            and (etc / "passwd").read_bytes() == b"root:x:0:0\n"
            and _owner_mode(etc / "passwd") == (0, 0, 0o644))


@pytest.mark.parametrize("planted", ["other_users_dir", "etc", "file"])
def test_a_symlink_or_file_in_place_of_a_users_directory_is_never_written_through(
    notices, people, fake_etc, planted
):
    """Only root can change notice_dir's entries; should one be wrong anyway, it is replaced."""
    alice, bob = people
    entry = notices / str(alice.uid)
    with NoticeDir.open(notices) as published:
        published.write(bob.uid, bob.gid, "scratch.json", [b"bob's\n"])
        bob_dir = notices / str(bob.uid)
        if planted == "other_users_dir":
            entry.symlink_to(bob_dir)
        elif planted == "etc":
            entry.symlink_to(fake_etc)
        else:
            entry.write_bytes(b"junk")
        path = published.write(alice.uid, alice.gid, "scratch.json", [b"alice's\n"])
    assert _unchanged_etc(fake_etc)
    assert not entry.is_symlink() and entry.is_dir()
    assert _owner_mode(entry) == (alice.uid, alice.gid, 0o500)
    assert Path(path).read_bytes() == b"alice's\n"
    assert os.listdir(bob_dir) == ["scratch.json"]
    assert (bob_dir / "scratch.json").read_bytes() == b"bob's\n"
    assert _owner_mode(bob_dir) == (bob.uid, bob.gid, 0o500)
    assert _owner_mode(bob_dir / "scratch.json") == (bob.uid, bob.gid, 0o400)


def test_a_users_directory_owned_by_another_user_is_refused(notices, people):
    alice, bob = people
    with NoticeDir.open(notices) as published:
        entry = notices / str(alice.uid)
        entry.mkdir(mode=0o700)
        os.chown(entry, bob.uid, bob.gid)
        with pytest.raises(NoticeDirError, match=rf"owned by uid {bob.uid}, not by uid "
                                                 rf"{alice.uid}.*rm -r"):
            published.write(alice.uid, alice.gid, "scratch.json", [b"x\n"])
        assert os.listdir(entry) == []
        assert _owner_mode(entry) == (bob.uid, bob.gid, 0o700)
        # the others are still served
        published.write(bob.uid, bob.gid, "scratch.json", [b"bob\n"])


def test_planted_temporary_names_and_a_symlink_at_the_final_name_cannot_redirect_root(
    notices, people, open_tree, fake_etc, monkeypatch
):
    """The user opens their own directory (0700) and plants what they can guess."""
    alice, bob = people
    victim = open_tree / "victim.txt"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o644)
    with NoticeDir.open(notices) as published:
        published.write(alice.uid, alice.gid, "scratch.list", [b"first\n"])
        mine = notices / str(alice.uid)
        assert alice.run("chmod", "700", str(mine)).returncode == 0
        guesses = [f"{n:016x}" for n in range(6)]
        for number, guess in enumerate(guesses):
            to = str(fake_etc if number == 0 else victim)
            assert alice.run("ln", "-s", to, f"{mine}/.scratch.list.{guess}.tmp").returncode == 0
        assert alice.run("rm", "-f", f"{mine}/scratch.list").returncode == 0
        assert alice.run("ln", "-s", str(victim), f"{mine}/scratch.list").returncode == 0
        tokens = iter([*guesses, "00000000000000ff"])
        monkeypatch.setattr(publish, "_temp_token", lambda: next(tokens))
        path = published.write(alice.uid, alice.gid, "scratch.list", [b"second\n"])
    assert victim.read_bytes() == b"precious\n"
    assert _owner_mode(victim) == (0, 0, 0o644)
    assert _unchanged_etc(fake_etc)
    assert not Path(path).is_symlink() and Path(path).read_bytes() == b"second\n"
    assert _owner_mode(path) == (alice.uid, alice.gid, 0o400)
    assert _owner_mode(mine) == (alice.uid, alice.gid, 0o500)
    for guess in guesses:  # what the user planted is theirs: left as it was
        assert os.path.islink(f"{mine}/.scratch.list.{guess}.tmp")
    assert not os.path.lexists(f"{mine}/.scratch.list.00000000000000ff.tmp")
    assert bob.run("cat", path).returncode != 0


def test_no_free_temporary_name_is_an_error_not_a_write_through(
    notices, people, fake_etc, monkeypatch
):
    alice, _bob = people
    victim = fake_etc / "passwd"
    with NoticeDir.open(notices) as published:
        published.write(alice.uid, alice.gid, "scratch.list", [b"first\n"])
        mine = notices / str(alice.uid)
        alice.run("chmod", "700", str(mine))
        assert alice.run("ln", "-s", str(victim), f"{mine}/.scratch.list.{'0' * 16}.tmp"
                         ).returncode == 0
        monkeypatch.setattr(publish, "_temp_token", lambda: "0" * 16)
        with pytest.raises(NoticeDirError, match=r"no free temporary name"):
            published.write(alice.uid, alice.gid, "scratch.list", [b"second\n"])
    assert (mine / "scratch.list").read_bytes() == b"first\n"
    assert _unchanged_etc(fake_etc)


def test_a_directory_at_the_final_name_is_removed_when_empty_and_refused_when_not(
    notices, people
):
    alice, _bob = people
    with NoticeDir.open(notices) as published:
        published.write(alice.uid, alice.gid, "a.json", [b"a\n"])
        mine = notices / str(alice.uid)
        alice.run("chmod", "700", str(mine))
        assert alice.run("mkdir", f"{mine}/b.json", f"{mine}/c.json").returncode == 0
        assert alice.run("touch", f"{mine}/c.json/keep").returncode == 0
        published.write(alice.uid, alice.gid, "b.json", [b"b\n"])
        with pytest.raises(NoticeDirError, match=r"c.json: a directory is in the way"):
            published.write(alice.uid, alice.gid, "c.json", [b"c\n"])
    assert (mine / "b.json").read_bytes() == b"b\n"
    assert sorted(os.listdir(mine)) == ["a.json", "b.json", "c.json"]  # no temporary left
    assert os.listdir(mine / "c.json") == ["keep"]


def test_a_file_system_mounted_on_a_users_directory_is_refused(notices, people, tmpfs):
    """A user owns their directory, so FUSE would let them mount over it."""
    alice, _bob = people
    with NoticeDir.open(notices) as published:
        published.write(alice.uid, alice.gid, "a.json", [b"a\n"])
        tmpfs(notices / str(alice.uid), "1m")
        with pytest.raises(NoticeDirError, match=r"another file system is mounted there"):
            published.write(alice.uid, alice.gid, "a.json", [b"b\n"])


def test_a_failure_midway_leaves_the_previous_file_and_no_temporary(notices, people):
    alice, _bob = people

    def broken() -> Iterator[bytes]:
        yield b"partial\n"
        raise RuntimeError("the database went away")

    with NoticeDir.open(notices) as published:
        published.write(alice.uid, alice.gid, "scratch.list", [b"first\n"])
        with pytest.raises(RuntimeError, match="went away"):
            published.write(alice.uid, alice.gid, "scratch.list", broken())
    mine = notices / str(alice.uid)
    assert os.listdir(mine) == ["scratch.list"]
    assert (mine / "scratch.list").read_bytes() == b"first\n"


def test_a_full_disk_is_one_error_naming_the_file_and_leaves_no_temporary(
    open_tree, people, tmpfs
):
    alice, _bob = people
    small = tmpfs(open_tree / "small", "256k")
    os.chmod(small, 0o711)
    with NoticeDir.open(small) as published:
        published.write(alice.uid, alice.gid, "scratch.list", [b"first\n"])
        with pytest.raises(NoticeDirError, match=r"scratch.list: cannot write: No space left"):
            published.write(alice.uid, alice.gid, "scratch.list", (b"x" * 65536 for _ in range(8)))
    assert os.listdir(small / str(alice.uid)) == ["scratch.list"]
    assert (small / str(alice.uid) / "scratch.list").read_bytes() == b"first\n"


def test_a_200k_line_list_is_streamed_not_joined_in_memory(notices, people):
    alice, _bob = people
    line = b"123456\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z\t/scratch/" + b"x" * 60 + b"\n"
    count = 200_000
    with NoticeDir.open(notices) as published:
        tracemalloc.start()
        try:
            path = published.write(alice.uid, alice.gid, "big.list", (line for _ in range(count)))
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    total = len(line) * count
    assert os.path.getsize(path) == total
    assert peak < total / 10, (peak, total)


def test_names_remove_and_uids(notices, people):
    alice, bob = people
    with NoticeDir.open(notices) as published:
        assert published.names(alice.uid) == [] and published.uids() == []
        published.remove(alice.uid, "absent.json")  # nothing to remove: no error
        for name in ("b.list", "a.json"):
            published.write(alice.uid, alice.gid, name, [b"x\n"])
        published.write(bob.uid, bob.gid, "a.json", [b"x\n"])
        assert published.names(alice.uid) == ["a.json", "b.list"]
        published.remove(alice.uid, "b.list")
        published.remove(alice.uid, "b.list")
        assert published.names(alice.uid) == ["a.json"]
        assert published.uids() == sorted([alice.uid, bob.uid])
        for bad in ("../x", ".hidden", "", "a/b"):
            with pytest.raises(ValueError):
                published.write(alice.uid, alice.gid, bad, [b"x"])


def test_task_file_names():
    assert task_file("scratch", "json") == "scratch.json"
    assert task_file("path:/some/dir", "list") == "path%3A%2Fsome%2Fdir.list"
    assert task_file(".hidden", "json") == "%2Ehidden.json"
    assert task_file("é ü", "json") == "%C3%A9%20%C3%BC.json"
    first, second = (task_file("path:/" + "a" * 300 + end, "list") for end in "bc")
    assert first != second and first.endswith(".list")
    assert len(first.encode()) <= publish.MAX_NAME_BYTES
    with pytest.raises(ValueError):
        task_file("scratch", "../json")


def test_a_user_who_runs_dkmonitor_publishes_for_themselves_only(open_tree, people):
    """Not root: the user's own notice_dir, 0500 kept, other users' uids refused."""
    alice, bob = people
    home = open_tree / "alice"
    home.mkdir(mode=0o755)
    os.chown(home, alice.uid, alice.gid)
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from dkmonitor.announce.publish import NoticeDir, NoticeDirError\n"
        f"with NoticeDir.open(Path({str(home / 'notices')!r})) as n:\n"
        f"    print(n.write({alice.uid}, {alice.gid}, 's.json', [b'mine']))\n"
        f"    print(n.write({alice.uid}, {alice.gid}, 's.json', [b'again']))\n"
        "    try:\n"
        f"        n.write({bob.uid}, {bob.gid}, 's.json', [b'x'])\n"
        "    except NoticeDirError as exc:\n"
        "        print('refused:', exc)\n"
    )
    done = alice.run(*python_for_users(code))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == f"{home}/notices/{alice.uid}/s.json"
    assert lines[2].startswith("refused:") and "only root can publish" in lines[2]
    assert Path(lines[1]).read_bytes() == b"again"
    assert _owner_mode(lines[1]) == (alice.uid, alice.gid, 0o400)
    assert _owner_mode(home / "notices" / str(alice.uid)) == (alice.uid, alice.gid, 0o500)
    assert not os.path.lexists(home / "notices" / str(bob.uid))


# --- [announce] notice_dir ----------------------------------------------------------


def test_notice_dir_defaults_beside_roots_state_dir_and_must_be_absolute(tmp_path):
    from dkmonitor.config import default_notice_dir, settings_from_mapping
    from dkmonitor.errors import ConfigError

    assert settings_from_mapping({}, None, environ={}).announce.notice_dir == Path(
        "/var/lib/dkmonitor-notices")
    state = tmp_path / "state"
    given = settings_from_mapping({"general": {"state_dir": str(state)}}, None, environ={})
    assert given.announce.notice_dir == tmp_path / "state-notices"
    assert default_notice_dir(state, as_root=False) == state / "notices"
    named = {"announce": {"notice_dir": str(tmp_path / "n")}}
    assert settings_from_mapping(named, None, environ={}).announce.notice_dir == tmp_path / "n"
    (tmp_path / "file").write_text("")
    for bad in ("relative/dir", str(tmp_path / "file")):
        with pytest.raises(ConfigError, match=r"\[announce\] notice_dir = .*absolute path to a "
                                              "directory"):
            settings_from_mapping({"announce": {"notice_dir": bad}}, Path("/etc/x.cfg"), {})
