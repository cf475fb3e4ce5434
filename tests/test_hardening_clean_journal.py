"""Write-ahead journal, reconciliation, files in use, exit status (issue 10, items 2, 8, 15)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import dkmonitor.clean.cleaner as cleaner_module
from dkmonitor.clean.cleaner import IN_USE
from dkmonitor.clean.fsops import TEMP_PREFIX
from dkmonitor.clean.journal import ActionRecord, Journal
from dkmonitor.clean.reconcile import reconcile_task
from dkmonitor.clean.step import clean_step
from dkmonitor.db.engine import driver_url, open_database
from tests.fixtures.cleaning import (
    HOST,
    journal,
    make_file,
    make_run,
    make_settings,
    make_task,
    needs_root,
    read_noatime,
)

pytestmark = needs_root


def test_a_file_open_for_writing_elsewhere_is_skipped_as_in_use(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "written.log")
    make_file(target / "read.dat")
    with open(target / "written.log", "ab") as out, open(target / "read.dat", "rb") as inp:
        writer = subprocess.Popen(["sleep", "600"], stdout=out, stdin=inp)
    try:
        summary = clean_step(clean_db, make_settings(),
                             make_run(make_task(target, delete=True)))
    finally:
        writer.kill()
        writer.wait()
    assert (target / "written.log").exists() and not (target / "read.dat").exists()
    rows = {os.path.basename(bytes(r.path)): r for r in journal(clean_db)}
    assert rows[b"written.log"].outcome == "skipped" and rows[b"written.log"].reason == IN_USE
    assert rows[b"read.dat"].outcome == "done"
    assert summary.error is None  # a skip is not a failure


def test_one_failed_delete_makes_the_run_exit_1(tmp_path, dkm_factory):
    target = tmp_path / "target"
    make_file(target / "stuck.dat")
    make_file(target / "gone.dat")
    subprocess.run(["chattr", "+i", str(target / "stuck.dat")], check=True)
    try:
        dkm = dkm_factory()
        made = dkm("task", "create", "scratch", "--target", str(target), "--warning", "0.001",
                   "--critical", "0.002", "--old-days", "30", "--delete")
        assert made.returncode == 0, made.stderr
        result = dkm("run", "full", "scratch")
    finally:
        subprocess.run(["chattr", "-i", str(target / "stuck.dat")], check=True)
    assert result.returncode == 1, result.stderr
    assert "could not be deleted" in result.stderr
    assert (target / "stuck.dat").exists() and not (target / "gone.dat").exists()


def test_the_database_going_away_mid_run_leaves_no_deletion_unrecorded(
    clean_tree, pg_url, monkeypatch
):
    target = clean_tree["target"]
    for i in range(8):
        make_file(target / f"f{i}", size=100 + i)
    db = open_database(pg_url)
    name = make_url(pg_url).database
    admin = create_engine(driver_url(pg_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    real_delete = cleaner_module.delete_file
    calls: list[str] = []

    def delete_then_lose_the_database(dir_fd, cand):
        real_delete(dir_fd, cand)
        calls.append(cand.name)
        if len(calls) == 3:  # the server goes away right after an act
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})

    monkeypatch.setattr(cleaner_module, "delete_file", delete_then_lose_the_database)
    task = make_task(target, delete=True)
    try:
        summary = clean_step(db, make_settings(), make_run(task))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert summary.error and "journal" in summary.error
    gone = {f"f{i}".encode() for i in range(8) if not (target / f"f{i}").exists()}
    assert len(gone) == 3  # nothing acted once the intent could not be committed
    db.dispose()
    db = open_database(pg_url)
    try:
        rows = journal(db)  # every deleted file has its durable row (done or pending)
        assert {os.path.basename(bytes(r.path)) for r in rows} >= gone
        reconcile_task(db, task, HOST)  # the next run settles what was pending
        done = {os.path.basename(bytes(r.path)) for r in journal(db) if r.outcome == "done"}
        assert done == gone and not [r for r in journal(db) if r.outcome == "pending"]
    finally:
        db.dispose()


def _pending_move(db, src: Path, dest: Path, temp: Path) -> None:
    st = os.lstat(src)
    Journal(db, "scratch", HOST, None).begin(ActionRecord(
        action="move", outcome="pending", path=os.fsencode(src), destination=os.fsencode(dest),
        size=st.st_size, uid=st.st_uid, temp=os.fsencode(temp), dev=st.st_dev, ino=st.st_ino,
    ))


def test_reconciliation_finishes_a_copy_that_was_in_place_and_removes_the_temp(
    clean_tree, clean_db
):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    data = make_file(target / "f.dat")
    dest = Path(f"{reloc}/{HOST}{target}/f.dat")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)  # killed after the rename into place, before the unlink
    temp = dest.parent / f"{TEMP_PREFIX}0123456789abcdef.tmp"
    temp.write_bytes(data[:10])
    _pending_move(clean_db, target / "f.dat", dest, temp)

    settled = reconcile_task(clean_db, make_task(target, relocation=reloc), HOST)

    assert (settled.done, settled.temps_removed) == (1, 1)
    assert not (target / "f.dat").exists() and read_noatime(dest) == data
    assert not temp.exists()
    (row,) = journal(clean_db)
    assert row.outcome == "done" and row.finished_at is not None


def test_reconciliation_keeps_both_when_they_differ_and_marks_untouched_intents(
    clean_tree, clean_db
):
    target, reloc = clean_tree["target"], clean_tree["reloc"]
    make_file(target / "both.dat")
    make_file(target / "never.dat")
    base = Path(f"{reloc}/{HOST}{target}")
    base.mkdir(parents=True)
    (base / "both.dat").write_bytes(b"not the same")
    _pending_move(clean_db, target / "both.dat", base / "both.dat", base / ".dkmonitor-a.tmp")
    _pending_move(clean_db, target / "never.dat", base / "never.dat", base / ".dkmonitor-b.tmp")

    reconcile_task(clean_db, make_task(target, relocation=reloc), HOST)

    rows = {os.path.basename(bytes(r.path)): r.outcome for r in journal(clean_db)}
    assert rows == {b"both.dat": "failed", b"never.dat": "interrupted"}
    assert (target / "both.dat").exists() and (base / "both.dat").exists()
    assert (target / "never.dat").exists() and not (base / "never.dat").exists()


def test_unsettled_rows_keep_the_cleaner_from_acting(clean_tree, clean_db):
    target = clean_tree["target"]
    make_file(target / "f.dat")
    Journal(clean_db, "scratch", HOST, None).begin(ActionRecord(
        action="move", outcome="pending", path=b"/elsewhere/x", destination=b"/nowhere/x"))
    summary = clean_step(clean_db, make_settings(), make_run(make_task(target, delete=True)))
    assert summary.error and "interrupted run" in summary.error
    assert (target / "f.dat").exists()
