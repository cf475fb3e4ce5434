"""Issue 10 items 6 and 7: what root creates, and what it refuses to follow.

As root with umask 022 (the usual cron environment): the state directory is
0700 and every file dkmonitor keeps there or in its log directory is 0600, so
a local user cannot read other users' paths; files in log_dir and outbox_dir
are never created through a user's symlink; a settings file a user could edit
is refused; ``sudo -E`` (HOME of a user) does not steer root.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from dkmonitor import config
from dkmonitor.config_values import expand_user
from dkmonitor.notify.mailer import DeliveryError, OutboxMailer
from dkmonitor.safefs import UnsafePath, write_private_file
from tests.fixtures.cli import DKMONITOR

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def local_user() -> Iterator[tuple[str, int, int, Path]]:
    """A real unprivileged user with a home directory, removed afterwards."""
    name = f"dkh{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
    finally:
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


def as_user(user: tuple[str, int, int, Path], code: str) -> subprocess.CompletedProcess[str]:
    _name, uid, gid, home = user

    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return subprocess.run(
        ["/usr/bin/python3", "-c", code], preexec_fn=drop, capture_output=True, text=True,
        cwd="/", env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip


@pytest.fixture
def open_base(tmp_path) -> Path:
    """A directory every user can traverse, so only dkmonitor's own modes protect files."""
    base = Path(f"/tmp/dkm-hard-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def dkm(conf: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [DKMONITOR, "--config", str(conf), *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=300, check=False,
    )  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------ item 6


def test_state_and_log_files_are_private_as_root(umask022, open_base, local_user, tmp_path):
    state, logs = open_base / "state", open_base / "logs"
    conf = open_base / "settings.cfg"
    conf.write_text(f"[general]\nstate_dir = {state}\n[logging]\nlog_dir = {logs}\n")
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("x" * 1000)
    created = dkm(conf, "task", "create", "t", "--target", str(target),
                  "--warning", "99.8", "--critical", "99.9", "--old-days", "30")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert dkm(conf, "run", "full").returncode == 0
    db = state / "dkmonitor.db"
    # the database down (corrupted): the scan goes to the spool
    db.write_bytes(b"not a database" * 100)
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    assert dkm(conf, "run", "full").returncode == 1

    private_dirs = [state, logs, state / "locks", state / "spool"]
    private_files = [
        db, state / "tasks.json", logs / "dkmonitor.log", logs / "dkmonitor.log.lock",
        *(state / "locks").iterdir(), *(state / "spool").glob("*.json"),
    ]  # fmt: skip
    assert len(private_files) >= 7
    for directory in private_dirs:
        assert mode(directory) == 0o700, directory
    for path in private_files:
        assert mode(path) == 0o600, path
    for path in [*private_files, *private_dirs]:
        code = f"import os\ntry:\n os.listdir({str(path)!r}) if os.path.isdir({str(path)!r}) " \
               f"else open({str(path)!r}).read()\nexcept PermissionError:\n raise SystemExit(7)"
        assert as_user(local_user, code).returncode == 7, path


def test_existing_state_dir_is_tightened(umask022, open_base):
    state = open_base / "state"
    state.mkdir(mode=0o755)
    conf = open_base / "settings.cfg"
    conf.write_text(f"[general]\nstate_dir = {state}\n")
    done = dkm(conf, "run", "quick", env={"DKM_LOG": str(open_base / "log")})
    assert done.returncode == 0, done.stderr
    assert mode(state) == 0o700


def test_older_world_readable_database_is_tightened(umask022, open_base):
    state = open_base / "state"
    state.mkdir(mode=0o700)
    db = state / "dkmonitor.db"
    conf = open_base / "settings.cfg"
    conf.write_text(f"[general]\nstate_dir = {state}\n")
    assert dkm(conf, "task", "list", env={"DKM_LOG": str(open_base / "l")}).returncode == 0
    for path in state.glob("dkmonitor.db*"):
        path.chmod(0o644)  # as an older dkmonitor left it
    assert dkm(conf, "task", "list", env={"DKM_LOG": str(open_base / "l")}).returncode == 0
    assert mode(db) == 0o600
    assert all(mode(path) == 0o600 for path in state.glob("dkmonitor.db*"))


def test_state_dir_others_can_change_is_refused(open_base, sticky_base, local_user):
    code = f"import os\nos.mkdir({str(sticky_base / 'state')!r}, 0o700)\n"
    assert as_user(local_user, code).returncode == 0
    conf = open_base / "settings.cfg"
    conf.write_text(f"[general]\nstate_dir = {sticky_base / 'state'}\n"
                    f"[database]\nurl = sqlite:///{open_base / 'h.db'}\n")  # fmt: skip
    done = dkm(conf, "run", "quick", env={"DKM_LOG": str(open_base / "l")})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[general] state_dir" in lines[0] and "unsafe" in lines[0]


def test_new_sqlite_database_elsewhere_is_private(umask022, open_base):
    conf = open_base / "settings.cfg"
    conf.write_text(
        f"[general]\nstate_dir = {open_base / 's'}\n"
        f"[database]\nurl = sqlite:///{open_base / 'hist.db'}\n"
    )
    assert dkm(conf, "task", "list", env={"DKM_LOG": str(open_base / "l")}).returncode == 0
    assert mode(open_base / "hist.db") == 0o600


# ------------------------------------------------------------------ item 7: symlinks


@pytest.fixture
def sticky_base(open_base) -> Path:
    base = open_base / "shared"
    base.mkdir()
    base.chmod(0o1777)
    return base


def test_log_dir_planted_by_a_user_is_not_followed(umask022, open_base, sticky_base, local_user):
    victim = open_base / "victim"
    victim.mkdir(mode=0o700)
    secret = victim / "secret.txt"
    secret.write_text("untouched\n")
    # the user prepares the log directory root will use, with a link to the victim's file
    code = (
        f"import os\nos.mkdir({str(sticky_base / 'logs')!r}, 0o777)\n"
        f"os.symlink({str(secret)!r}, {str(sticky_base / 'logs' / 'dkmonitor.log')!r})\n"
        f"os.symlink({str(victim)!r}, {str(sticky_base / 'linked')!r})\n"
    )
    assert as_user(local_user, code).returncode == 0
    conf = open_base / "settings.cfg"
    for log_dir in (sticky_base / "logs", sticky_base / "linked", sticky_base):
        conf.write_text(f"[general]\nstate_dir = {open_base / 'state'}\n"
                        f"[logging]\nlog_dir = {log_dir}\n")  # fmt: skip
        done = dkm(conf, "-v", "task", "list")
        assert done.returncode == 0, done.stderr
        assert "cannot write the log" in done.stderr and "unsafe directory" in done.stderr
    assert secret.read_text() == "untouched\n"
    assert sorted(p.name for p in victim.iterdir()) == ["secret.txt"]


def test_outbox_planted_by_a_user_is_not_followed(umask022, open_base, sticky_base, local_user):
    victim = open_base / "victim"
    victim.mkdir(mode=0o700)
    code = f"import os\nos.symlink({str(victim)!r}, {str(sticky_base / 'outbox')!r})\n"
    assert as_user(local_user, code).returncode == 0
    message = EmailMessage()
    message["To"] = "x@example.edu"
    message.set_content("private")
    for outbox in (sticky_base / "outbox", sticky_base):
        with pytest.raises(DeliveryError, match="unsafe directory"):
            OutboxMailer(str(outbox)).send(message)
    assert list(victim.iterdir()) == []
    good = open_base / "out" / "box"
    OutboxMailer(str(good)).send(message)
    (written,) = good.iterdir()
    assert mode(good) == 0o700 and mode(good.parent) == 0o700 and mode(written) == 0o600


def test_a_planted_file_is_never_written_through(open_base):
    directory = open_base / "d"
    directory.mkdir(mode=0o700)
    os.symlink("/etc/passwd", directory / "x.json")
    write_private_file(directory, "x.json", b"{}")  # a rename replaces the link
    assert not (directory / "x.json").is_symlink()
    assert Path("/etc/passwd").read_bytes() != b"{}"
    os.chown(directory, 65534, 65534)
    with pytest.raises(UnsafePath):
        write_private_file(directory, "y.json", b"{}")


# ------------------------------------------------------------------ item 7: settings


@pytest.mark.parametrize("case", ["owner", "group-writable", "world-writable"])
def test_settings_file_a_user_could_edit_is_refused(open_base, local_user, case):
    conf = open_base / "settings.cfg"
    conf.write_text(f"[general]\nstate_dir = {open_base / 'state'}\n")
    if case == "owner":
        os.chown(conf, local_user[1], local_user[2])
        conf.chmod(0o644)
    else:
        conf.chmod(0o664 if case == "group-writable" else 0o646)
    done = dkm(conf, "task", "list", env={"DKM_LOG": str(open_base / "log")})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(conf) in lines[0], done.stderr
    assert ("not owned by root" if case == "owner" else "writable by group or others") in lines[0]
    assert not (open_base / "state").exists()


def test_sudo_keeping_a_users_home_does_not_steer_root(local_user, monkeypatch):
    """sudo -E: HOME is the user's; root must read neither their settings nor use their home."""
    home = local_user[3]
    planted = home / ".dkmonitor" / "settings.cfg"
    planted.parent.mkdir()
    planted.write_text(f"[general]\nstate_dir = {home / 'state'}\n")
    monkeypatch.setenv("HOME", str(home))
    if config.SYSTEM_CONFIG.exists():
        pytest.skip("this machine has /etc/dkmonitor/settings.cfg")
    import pwd

    root_home = pwd.getpwuid(0).pw_dir
    found = config.find_config_file(None, {})
    assert found is None or not str(found).startswith(str(home))
    assert config.default_state_dir() == Path("/var/lib/dkmonitor")
    assert expand_user("~/logs") == f"{root_home}/logs"
    settings = config.settings_from_mapping({"logging": {"log_dir": "~/dkm-logs"}}, None, {})
    assert settings.logging.log_dir == f"{root_home}/dkm-logs"
    assert not str(settings.state_dir).startswith(str(home))
