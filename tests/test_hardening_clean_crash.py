"""kill -9 a real ``dkmonitor run full`` at random points; nothing may be lost or doubled.

Each round adds a few old files to a target on its own tmpfs, starts the
real command, and kills its whole process group after a random delay drawn
from the measured length of an uninterrupted run (so kills land in the
start-up, the scan and the cleaning alike). The next round's run reconciles
what the killed one left. After at least 20 rounds one run finishes, and
then, for every file ever created: exactly one of source / destination
exists, byte-identical to what was written; exactly one ``done`` row;
no ``pending`` row; no temporary copy anywhere; nothing else in the
relocation tree. The seed is printed so that a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from dkmonitor.db.engine import open_database
from dkmonitor.db.models import Action
from tests.fixtures.cleaning import HOST, make_file, needs_root
from tests.fixtures.cli import DKMONITOR, Dkm

pytestmark = needs_root

ROUNDS = 20
FILES_PER_ROUND = 25


def _run(dkm: Dkm, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [DKMONITOR, "--config", str(dkm.config), *args],
        env={**os.environ, **dkm.env}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def _timed(dkm: Dkm, *args: str) -> float:
    started = time.monotonic()
    proc = _run(dkm, *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - started


class Crasher:
    """One target, its files, and the rounds of killed runs."""

    def __init__(self, dkm: Dkm, target: Path, seed: int):
        self.dkm, self.target = dkm, target
        self.rng = random.Random(seed)
        self.files: dict[Path, bytes] = {}
        self.round = 0

    def add_files(self) -> None:
        directory = self.target / f"user{self.round % 3}" / f"r{self.round}"
        for i in range(FILES_PER_ROUND):
            path = directory / f"f{i}.dat"
            self.files[path] = make_file(path, size=self.rng.randrange(1, 6000), age_days=100)
        self.round += 1

    def kill_round(self, low: float, high: float) -> None:
        self.add_files()
        proc = _run(self.dkm, "run", "full", "scratch")
        try:
            proc.wait(timeout=self.rng.uniform(low, high))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()


def _crash_rounds(dkm: Dkm, target: Path, seed: int) -> Crasher:
    """Measure an idle and a full run, then kill ROUNDS runs in between."""
    crasher = Crasher(dkm, target, seed)
    idle = _timed(dkm, "run", "full", "scratch")  # empty target: start-up and scan only
    crasher.add_files()
    full = _timed(dkm, "run", "full", "scratch")
    for _ in range(ROUNDS):
        crasher.kill_round(idle * 0.7, full * 1.1)
    _timed(dkm, "run", "full", "scratch")  # reconciles the last kill and finishes
    return crasher


def _rows(url: str) -> list[Action]:
    db = open_database(url)
    try:
        with db.session() as session:
            return list(session.scalars(select(Action)))
    finally:
        db.dispose()


def _temps(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob(".dkmonitor-*")]


@pytest.fixture
def crash_setup(tmp_path: Path, tmpfs: Callable[..., Path], dkm_factory: Callable[..., Dkm]):
    def build(url: str | None, *, move: bool) -> tuple[Dkm, Path, Path]:
        target = tmpfs(tmp_path / "target", "16m")
        reloc = tmpfs(tmp_path / "reloc", "16m")  # another filesystem: copy, fsync, unlink
        os.chmod(target, 0o1777)
        dkm = dkm_factory(url)
        how = ["--move-to", str(reloc)] if move else ["--delete"]
        made = dkm("task", "create", "scratch", "--target", str(target), "--warning", "0.001",
                   "--critical", "0.002", "--old-days", "30", *how)
        assert made.returncode == 0, made.stderr
        return dkm, target, reloc
    return build


def test_kill_9_during_cross_filesystem_moves_loses_and_doubles_nothing(crash_setup):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    dkm, target, reloc = crash_setup(None, move=True)
    crasher = _crash_rounds(dkm, target, seed)

    rows = _rows(f"sqlite:///{dkm.state_dir / 'dkmonitor.db'}")
    assert not [r for r in rows if r.outcome == "pending"]
    done = [bytes(r.path) for r in rows if r.action == "move" and r.outcome == "done"]
    expected_dest = set()
    for path, data in crasher.files.items():
        dest = Path(f"{reloc}/{HOST}{path}")
        expected_dest.add(dest)
        assert path.exists() != dest.exists(), f"{path}: at both or neither place (seed {seed})"
        assert dest.read_bytes() == data, f"{dest} differs (seed {seed})"
        assert done.count(os.fsencode(path)) == 1, f"{path}: {done.count(os.fsencode(path))} rows"
    assert _temps(target, reloc) == []
    placed = {p for p in reloc.rglob("*") if p.is_file()}
    assert placed == expected_dest  # nothing doubled (no f.dat.1), nothing stray


def test_kill_9_during_deletes_leaves_every_deletion_journaled(crash_setup, pg_url):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    dkm, target, reloc = crash_setup(pg_url, move=False)
    crasher = _crash_rounds(dkm, target, seed)

    rows = _rows(pg_url)
    assert not [r for r in rows if r.outcome == "pending"]
    done = [bytes(r.path) for r in rows if r.action == "delete" and r.outcome == "done"]
    for path in crasher.files:
        assert not path.exists()
        assert done.count(os.fsencode(path)) == 1, f"{path} (seed {seed})"
    assert len(done) == len(crasher.files)
