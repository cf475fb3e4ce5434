"""Central database down: a run spools its results, a later run replays them once.

End to end with the real command on the real PostgreSQL server: the task is
created while the database is up (so the task cache knows it), the settings
file is then pointed at a dead port, and back.
"""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from dkmonitor.db.engine import open_database
from dkmonitor.db.models import Scan, UserStat

pytestmark = pytest.mark.postgres


def counts(url: str) -> tuple[int, int, list[str]]:
    db = open_database(url)
    try:
        with db.session() as session:
            scans = session.scalar(select(func.count(Scan.id)))
            users = session.scalar(select(func.count(UserStat.id)))
            run_ids = list(session.scalars(select(Scan.run_id).order_by(Scan.started_at)))
    finally:
        db.dispose()
    return scans, users, run_ids


@pytest.fixture
def setup(dkm_factory, pg_url, tmp_path):
    """A dkmonitor on PostgreSQL with one task, and a way to switch its URL."""
    target = tmp_path / "target"
    target.mkdir()
    for name in ("a", "b", "c"):
        (target / name).write_text(name * 100)
    dkm = dkm_factory(pg_url)
    created = dkm(
        "task", "create", "scratch", "--target", str(target),
        "--warning", "99.8", "--critical", "99.9", "--old-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    dead = make_url(pg_url).set(port=1).render_as_string(hide_password=False)
    up_text = dkm.config.read_text()
    down_text = up_text.replace(pg_url, dead)
    assert down_text != up_text

    def database(up: bool) -> None:
        dkm.config.write_text(up_text if up else down_text)

    return dkm, database


def spooled(dkm) -> list:
    return sorted((dkm.state_dir / "spool").glob("*.json"))


def test_run_spools_while_down_and_next_run_replays_once(setup, pg_url):
    dkm, database = setup
    assert dkm("run", "full").returncode == 0  # also caches this host's tasks
    assert counts(pg_url)[:2] == (1, 1)

    database(up=False)
    down = dkm("run", "full")
    assert down.returncode == 1
    assert down.stdout == ""  # under cron: the news is on stderr, which cron mails
    assert "spooled" in down.stderr and str(dkm.state_dir) in down.stderr
    assert "Traceback" not in down.stderr
    files = spooled(dkm)
    assert len(files) == 1
    spooled_run = json.loads(files[0].read_text())
    assert spooled_run["task_name"] == "scratch" and spooled_run["kind"] == "full"
    assert len(spooled_run["users"]) == 1
    assert counts(pg_url)[:2] == (1, 1)

    database(up=True)
    back = dkm("run", "full")
    assert back.returncode == 0, back.stderr
    assert spooled(dkm) == []
    scans, users, run_ids = counts(pg_url)
    assert (scans, users) == (3, 3)
    assert run_ids.count(spooled_run["run_id"]) == 1
    assert run_ids[1] == spooled_run["run_id"]  # stored with its own time, in order

    # nothing left: a further run stores only itself
    assert dkm("run", "full").returncode == 0
    assert counts(pg_url)[:2] == (4, 4)


def test_flush_spool_stores_each_run_once(setup, pg_url, tmp_path):
    dkm, database = setup
    assert dkm("run", "quick").returncode == 0
    database(up=False)
    assert dkm("run", "quick").returncode == 1
    assert dkm("run", "full").returncode == 1
    files = spooled(dkm)
    assert len(files) == 2
    keep = tmp_path / "copy.json"
    shutil.copy(files[0], keep)

    flush_down = dkm("database", "flush-spool")
    assert flush_down.returncode == 1 and len(flush_down.stderr.splitlines()) == 1
    assert len(spooled(dkm)) == 2

    database(up=True)
    flushed = dkm("database", "flush-spool")
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.strip() == "stored 2 spooled run(s)"
    assert counts(pg_url)[:2] == (3, 1)

    # a replay interrupted after its commit (file still there) stores nothing twice
    shutil.copy(keep, files[0])
    assert dkm("database", "flush-spool").returncode == 0
    assert dkm("database", "flush-spool").stdout.strip() == "stored 0 spooled run(s)"
    assert counts(pg_url)[:2] == (3, 1)


def test_no_task_cache_and_database_down_says_so(dkm_factory, pg_url):
    dead = make_url(pg_url).set(port=1).render_as_string(hide_password=False)
    dkm = dkm_factory(dead)
    result = dkm("run", "full")
    assert result.returncode == 1
    assert "no local copy of this host's tasks" in result.stderr
    assert "Traceback" not in result.stderr
