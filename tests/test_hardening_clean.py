"""Hostile users and odd mounts around the relocation path (issue 10, items 1, 3, 10).

Real accounts (useradd) act through setpriv, in a tree every user can reach:
a 1777 target like /scratch, and a relocation path that someone may have
prepared in advance.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from dkmonitor.clean.restore import restore_task
from dkmonitor.clean.step import clean_step
from dkmonitor.db.tasks import create_task
from tests.fixtures.cleaning import (
    HOST,
    journal,
    make_file,
    make_run,
    make_settings,
    make_task,
    needs_root,
    read_noatime,
    real_user,
)

pytestmark = needs_root


@pytest.fixture
def people():
    return real_user("dkmvictim"), real_user("dkmattacker")


def _scratch(base: Path, reloc_mode: int) -> tuple[Path, Path]:
    target, reloc = base / "scratch", base / "reloc"
    target.mkdir()
    reloc.mkdir()
    os.chmod(target, 0o1777)
    os.chmod(reloc, reloc_mode)
    return target, reloc


def _victim_file(target: Path, victim) -> tuple[Path, bytes]:
    home = target / victim.name
    home.mkdir()
    os.chown(home, victim.uid, victim.gid)
    os.chmod(home, 0o700)
    path = home / "secret.dat"
    return path, make_file(path, uid=victim.uid, gid=victim.gid, mode=0o600)


def _mode(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


def test_mirrors_above_users_are_roots_and_closed_to_others(open_tree, clean_db, people):
    victim, attacker = people
    target, reloc = _scratch(open_tree, 0o755)
    path, data = _victim_file(target, victim)
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert summary.error is None
    mirror = Path(f"{reloc}/{HOST}{target}")
    assert _mode(mirror) == (0, 0o755)  # not 1777 like the target
    assert _mode(Path(f"{reloc}/{HOST}")) == (0, 0o755)
    assert _mode(mirror / victim.name) == (victim.uid, 0o700)
    assert read_noatime(mirror / victim.name / "secret.dat") == data
    # the attacker can neither plant a directory nor read the victim's file
    assert attacker.run("mkdir", str(mirror / "planted")).returncode != 0
    assert attacker.run("cat", str(mirror / victim.name / "secret.dat")).returncode != 0


def test_a_directory_pre_created_by_another_user_is_refused_not_used(open_tree, clean_db, people):
    victim, attacker = people
    target, reloc = _scratch(open_tree, 0o1777)  # a world-writable relocation path
    path, data = _victim_file(target, victim)
    trap = Path(f"{reloc}/{HOST}{target}/{victim.name}")
    made = attacker.run("mkdir", "-p", "-m", "0777", str(trap))
    assert made.returncode == 0, made.stderr

    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))

    assert read_noatime(path) == data  # the file stays where it was
    assert [p for p in trap.rglob("*")] == []  # nothing landed in the attacker's directory
    assert summary.failed == 1 and summary.error  # exit 1
    (row,) = journal(clean_db)
    assert row.outcome == "failed" and row.reason and f"{reloc}/{HOST}" in row.reason
    assert _mode(Path(f"{reloc}/{HOST}"))[0] == attacker.uid  # refused, never "fixed"


def test_a_symlink_planted_in_the_relocation_tree_is_refused(open_tree, clean_db, people):
    victim, attacker = people
    target, reloc = _scratch(open_tree, 0o1777)
    path, data = _victim_file(target, victim)
    elsewhere = reloc / "attacker-owned"
    assert attacker.run("mkdir", "-m", "0777", str(elsewhere)).returncode == 0
    assert attacker.run("ln", "-s", str(elsewhere), f"{reloc}/{HOST}").returncode == 0

    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))

    assert read_noatime(path) == data and list(elsewhere.iterdir()) == []
    assert summary.failed == 1 and summary.error
    assert "symlink" in (journal(clean_db)[0].reason or "")


def test_restore_refuses_a_directory_the_attacker_recreated_in_the_target(
    open_tree, database, people
):
    victim, attacker = people
    target, reloc = _scratch(open_tree, 0o755)
    path, data = _victim_file(target, victim)
    task = make_task(target, relocation=reloc)
    with database.session() as session:
        create_task(session, task)
    assert clean_step(database, make_settings(), make_run(task)).error is None
    path.parent.rmdir()  # the victim tidied up; the attacker takes the name
    assert attacker.run("mkdir", "-m", "0777", str(path.parent)).returncode == 0

    summary = restore_task(database, make_settings(), task.name)

    assert summary.restored == 0 and summary.failed == 1
    assert list(path.parent.iterdir()) == []
    assert read_noatime(Path(f"{reloc}/{HOST}{path}")) == data


def _chattr(flag: str, path: Path) -> None:
    proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr {flag} not supported here: {proc.stderr.strip()}")


def test_an_undeletable_source_leaves_no_copies_behind(clean_tree, clean_db, tmpfs):
    target, reloc = clean_tree["target"], tmpfs(clean_tree["reloc"], "4m")
    data = make_file(target / "imm.dat")
    _chattr("+i", target / "imm.dat")
    try:
        for _ in range(3):  # three nightly runs
            summary = clean_step(clean_db, make_settings(),
                                 make_run(make_task(target, relocation=reloc)))
            assert summary.failed == 1 and summary.error
    finally:
        _chattr("-i", target / "imm.dat")
    assert read_noatime(target / "imm.dat") == data
    assert [p for p in reloc.rglob("*") if not p.is_dir()] == []  # no imm.dat, imm.dat.1, ...
    rows = journal(clean_db)
    assert [r.outcome for r in rows] == ["failed"] * 3
    assert all("cannot be removed" in (r.reason or "") for r in rows)


def test_a_read_only_target_leaves_no_copies_behind(clean_tree, clean_db, tmpfs, bind_mount):
    source, reloc = clean_tree["target"], tmpfs(clean_tree["reloc"], "4m")
    data = make_file(source / "ro.dat")
    target = bind_mount(source, clean_tree["outside"] / "ro-view", read_only=True)
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert summary.failed == 1 and summary.error
    assert read_noatime(source / "ro.dat") == data
    assert [p for p in reloc.rglob("*") if not p.is_dir()] == []


def test_a_relocation_path_bind_mounted_from_the_target_filesystem_moves_by_copy(
    clean_tree, clean_db, bind_mount
):
    target = clean_tree["target"]
    archive = clean_tree["outside"] / "archive"
    archive.mkdir()
    reloc = bind_mount(archive, clean_tree["reloc"] / "mnt")  # same fs, another mount: EXDEV
    data = make_file(target / "f.dat")
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert summary.error is None and summary.moved[1001].files == 1
    assert not (target / "f.dat").exists()
    assert read_noatime(Path(f"{archive}/{HOST}{target}/f.dat")) == data


@pytest.mark.parametrize("inside", ["", "sub"], ids=["the-target", "inside-the-target"])
def test_a_relocation_path_that_is_the_target_through_a_bind_mount_is_refused(
    clean_tree, clean_db, bind_mount, inside
):
    target = clean_tree["target"]
    (target / "sub").mkdir()
    make_file(target / "f.dat")
    reloc = bind_mount(target / inside if inside else target, clean_tree["reloc"] / "mnt")
    before = sorted(p.name for p in target.rglob("*"))
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, relocation=reloc)))
    assert summary.error and "nothing was moved" in summary.error
    assert ("target itself" if not inside else "inside the target") in summary.error
    assert sorted(p.name for p in target.rglob("*")) == before
    assert journal(clean_db) == []
