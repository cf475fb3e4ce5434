"""Root's state directory fills up during an announcing run: one clear line, nothing
half-written used, what was published stands.

The state directory (the database, the record of what was announced, the scan's
spools) is its own small tmpfs here; a real site's may share a filesystem users
can fill, or a small /var. Each case fills it to a measured point with a
filler file, runs the real command, and checks what users and root are left
with: the lists and the record as they were, the scan's figures stored when
there was room for them, and no traceback.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.fixtures.cleaning import RealUser, real_user
from tests.fixtures.cli import Dkm

pytestmark = pytest.mark.usefixtures("requires_root")

FILES = 4000
NAME = 200  # bytes of each file's name: the spool and the record grow by ~250 each


@pytest.fixture
def site(tmp_path: Path, tmpfs, open_tree: Path) -> tuple[Dkm, Path, Path, RealUser]:
    state = tmpfs(tmp_path / "state", "8m")
    notices = open_tree / "notices"
    target = open_tree / "scratch"
    owner = real_user("dkmfull1")
    (target / "d").mkdir(parents=True)
    os.chmod(target, 0o755)
    old = time.time() - 400 * 86400
    for n in range(FILES):
        _old_file(target / "d" / f"{n:0{NAME}d}", owner, old)
    config = tmp_path / "settings.cfg"
    config.write_text(f"[general]\nstate_dir = {state}\n\n"
                      f"[database]\nurl = sqlite:///{state / 'dkmonitor.db'}\n\n"
                      f"[logging]\nlog_dir = {tmp_path / 'log'}\n\n"
                      f"[announce]\nnotice_dir = {notices}\n")
    config.chmod(0o600)
    dkm = Dkm(config=config, state_dir=state)
    created = dkm("task", "create", "scr", "--target", str(target), "--warning", "0.001",
                  "--critical", "100", "--old-days", "30", "--notice-days", "30", "--delete")
    assert created.returncode == 0, created.stderr
    first = dkm("run", "full", "scr")
    assert first.returncode == 0, first.stderr
    return dkm, target, notices, owner


def _old_file(path: Path, owner: RealUser, when: float) -> None:
    path.write_bytes(b"x")
    os.chown(path, owner.uid, owner.gid)
    os.utime(path, (when, when))


def _fill(state: Path, leave: int) -> Path:
    """A root file taking all of the state filesystem but ``leave`` bytes."""
    st = os.statvfs(state)
    filler = state / "filler"
    with open(filler, "wb") as out:
        out.truncate(0)
        room = st.f_bavail * st.f_frsize - leave
        out.write(b"\0" * max(0, room))
    return filler


def _published(notices: Path, owner: RealUser) -> tuple[bytes, int]:
    path = notices / str(owner.uid) / "scr.list"
    return path.read_bytes(), path.stat().st_ino


def _generations(state: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_ino) for p in (state / "announce").glob("*.files"))


def _scans(state: Path) -> int:
    with sqlite3.connect(state / "dkmonitor.db") as db:
        return int(db.execute("SELECT count(*) FROM scans").fetchone()[0])


def _errors(done) -> list[str]:
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("dkmonitor: error")]


def test_old_files_that_cannot_be_spooled_announce_nothing_and_the_scan_still_counts(site):
    dkm, target, notices, owner = site
    before, generations, scans = _published(notices, owner), _generations(dkm.state_dir), \
        _scans(dkm.state_dir)
    _old_file(target / "d" / "new.dat", owner, time.time() - 400 * 86400)
    filler = _fill(dkm.state_dir, 256 << 10)  # the spool needs ~1 MB
    done = dkm("run", "full", "scr")
    assert done.returncode == 1
    assert _errors(done) == [
        f"dkmonitor: error: task scr: nothing announced: cannot spool the old files in "
        f"{dkm.state_dir / 'announce'}: No space left on device (make room there; the lists "
        f"already published stand)"]
    assert _scans(dkm.state_dir) == scans + 1  # the spools' space was given back first
    assert _published(notices, owner) == before
    assert _generations(dkm.state_dir) == generations
    filler.unlink()
    again = dkm("run", "full", "scr")
    assert again.returncode == 0, again.stderr
    assert b"/new.dat\n" in _published(notices, owner)[0]


def test_a_record_that_cannot_be_written_leaves_the_previous_one(site):
    dkm, target, notices, owner = site
    before, generations = _published(notices, owner), _generations(dkm.state_dir)
    record_bytes = (dkm.state_dir / "announce" / generations[0][0]).stat().st_size
    _old_file(target / "d" / "new.dat", owner, time.time() - 400 * 86400)
    spool_bytes = FILES * (48 + NAME)  # announce/spool.py: FILE header and name
    _fill(dkm.state_dir, spool_bytes + record_bytes // 2)  # the spool fits, a new record not
    done = dkm("run", "full", "scr")
    assert done.returncode == 1
    assert _errors(done) == [
        f"dkmonitor: error: task scr: announcing and cleaning stopped: No space left on "
        f"device: {dkm.state_dir / 'announce'}"]
    assert _published(notices, owner) == before
    assert _generations(dkm.state_dir) == generations  # no half-written generation left


def test_a_full_state_directory_loses_the_run_in_one_line_and_acts_on_nothing(site):
    dkm, target, notices, owner = site
    before, scans = _published(notices, owner), _scans(dkm.state_dir)
    _fill(dkm.state_dir, 0)
    done = dkm("run", "full", "scr")
    assert done.returncode == 1
    errors = _errors(done)
    assert errors[-1] == (
        f"dkmonitor: error: task scr: results not stored: the database write failed, and "
        f"spooling them in {dkm.state_dir / 'spool'} too: No space left on device (make "
        f"room there)")
    assert len(errors) <= 2, errors  # and, first, the database's own complaint
    assert _scans(dkm.state_dir) == scans
    assert _published(notices, owner) == before
    assert len(list((target / "d").iterdir())) == FILES
