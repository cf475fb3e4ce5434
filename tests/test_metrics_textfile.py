"""[metrics] textfile: the node_exporter file written after each run, checked by promtool.

A real run over a small tree with known sizes; the file is parsed back with
prometheus_client's parser and compared with the test's own counts, and
Debian's promtool must accept it (a missing promtool skips, or fails under
CI=true).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pwd import getpwuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_notify_run import BIG, OLD, TIDY, make_target

HOST = socket.gethostname()


def username_for(uid: int) -> str:
    """As the scan names an owner: the passwd name, or the uid when there is none."""
    try:
        return getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def metrics(path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, sorted labels) -> value."""
    result = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def promtool_check(path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian package prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    checked = subprocess.run([promtool, "check", "metrics"], input=path.read_bytes(),
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def metered(dkm_factory, db_url, tmp_path):
    root = make_target(tmp_path)
    out = tmp_path / "textfile"
    out.mkdir()
    path = out / "dkmonitor.prom"
    dkm = dkm_factory(db_url, f"[metrics]\ntextfile = {path}\n")
    created = dkm("task", "create", "scratch", "--target", str(root), "--warning", "99.9",
                  "--critical", "100", "--old-days", "90")
    assert created.returncode == 0, created.stderr
    return dkm, root, path


def owned_inodes(root) -> dict[str, int]:
    """User name -> entries below ``root`` they own, each inode once: the tree's own count.

    Only owners of a regular file: they are the scan's users (and the series').
    """
    entries: dict[tuple[int, int], os.stat_result] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(parent, name))
            entries[(st.st_dev, st.st_ino)] = st
    counts: dict[int, int] = {}
    for st in entries.values():
        counts[st.st_uid] = counts.get(st.st_uid, 0) + 1
    owners = {st.st_uid for st in entries.values() if stat.S_ISREG(st.st_mode)}
    return {username_for(uid): counts[uid] for uid in owners}


def test_full_run_writes_the_numbers_promtool_accepts(metered):
    dkm, root, path = metered
    # Entries that are inodes but no files: a directory (with a file of its own
    # inside) and a symlink owned by BIG, and a hard link (one inode) of OLD's.
    (root / "bigdir").mkdir()
    os.chown(root / "bigdir", BIG.pw_uid, 0)
    (root / "bigdir" / "empty").write_bytes(b"")
    os.chown(root / "bigdir" / "empty", BIG.pw_uid, 0)
    (root / "biglink").symlink_to("big.dat")
    os.lchown(root / "biglink", BIG.pw_uid, 0)
    os.link(root / "old.dat", root / "bigdir" / "old-again.dat")
    result = dkm("run", "full")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [name for name in os.listdir(path.parent)] == ["dkmonitor.prom"]  # no temp left
    values = metrics(path)
    where = (("host", HOST), ("target", str(root)))

    def user(name: str, who: str) -> float:
        return values[(f"dkmonitor_{name}", tuple(sorted((*where, ("user", who)))))]

    assert user("user_bytes", BIG.pw_name) == 900_000
    assert user("user_files", BIG.pw_name) == 2  # big.dat, bigdir/empty
    assert user("user_old_bytes", BIG.pw_name) == 0
    assert user("user_bytes", OLD.pw_name) == 307_000
    assert user("user_old_bytes", OLD.pw_name) == 307_000
    assert user("user_files", TIDY.pw_name) == 1
    assert user("user_allocated_bytes", BIG.pw_name) >= 0
    # Inodes per user, against the tree's own count (lstat, once per inode).
    inodes = {
        dict(labels)["user"]: value
        for (name, labels), value in values.items()
        if name == "dkmonitor_user_inodes"
    }
    expected = owned_inodes(root)
    assert expected[BIG.pw_name] == 4  # big.dat, bigdir, bigdir/empty, biglink
    assert expected[OLD.pw_name] == 2  # old.dat (and its hard link), old2.dat
    assert inodes == expected
    used = values[("dkmonitor_target_used_ratio", where)]
    assert 0 < used < 1
    assert values[("dkmonitor_target_scan_errors", where)] == 0
    assert values[("dkmonitor_target_scan_duration_seconds", where)] >= 0
    assert values[("dkmonitor_target_last_success_timestamp_seconds", where)] > 1.7e9
    promtool_check(path)


def test_quick_run_keeps_the_users_of_the_last_full_scan(metered):
    dkm, root, path = metered
    assert dkm("run", "full").returncode == 0
    before = metrics(path)
    assert dkm("run", "quick").returncode == 0
    after = metrics(path)
    users = {key for key in before if key[0] == "dkmonitor_user_bytes"}
    assert users and users == {key for key in after if key[0] == "dkmonitor_user_bytes"}


def test_planted_symlink_is_replaced_not_followed(metered, tmp_path):
    dkm, root, path = metered
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path.symlink_to(victim)
    assert dkm("run", "full").returncode == 0
    assert victim.read_text() == "precious\n"
    assert path.is_file() and not path.is_symlink()
    assert "dkmonitor_user_bytes" in path.read_text()


def test_unwritable_textfile_fails_the_run_and_says_where(dkm_factory, sqlite_url, tmp_path):
    root = make_target(tmp_path)
    path = tmp_path / "missing-dir" / "dkmonitor.prom"
    dkm = dkm_factory(sqlite_url, f"[metrics]\ntextfile = {path}\n")
    created = dkm("task", "create", "scratch", "--target", str(root), "--warning", "99.9",
                  "--critical", "100", "--old-days", "90")
    assert created.returncode == 0, created.stderr
    result = dkm("run", "full")
    assert result.returncode == 1
    assert f"[metrics] textfile {path}: not written" in result.stderr
    assert "Traceback" not in result.stderr
