"""The action journal: batched commits, byte-exact paths, what survives a crash."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

import dkmonitor.clean.cleaner as cleaner_module
from dkmonitor.clean.cleaner import Cleaner
from dkmonitor.clean.journal import ActionRecord, Journal, moved_files
from dkmonitor.clean.step import clean_step
from dkmonitor.db.models import Action, Scan, utcnow
from tests.fixtures.cleaning import (
    HOST,
    journal,
    make_file,
    make_run,
    make_settings,
    make_task,
    needs_root,
)

ODD = b"/scratch/\xff\xfe/caf\xe9\n\x01 name"


def record(path: bytes = ODD, **changes: object) -> ActionRecord:
    values: dict[str, object] = dict(action="move", outcome="done", path=path,
                                     destination=b"/reloc/" + path, size=5, uid=1001,
                                     username="alice")
    values.update(changes)
    return ActionRecord(**values)  # type: ignore[arg-type]


def test_rows_are_committed_in_batches_while_the_run_goes_on(database):
    journal_ = Journal(database, "scratch", HOST, None, batch_size=2)
    for i in range(3):
        journal_.record(record(ODD + str(i).encode()))
    assert len(journal(database)) == 2  # the first batch is already committed
    journal_.flush()
    rows = journal(database)
    assert [bytes(r.path) for r in rows] == [ODD + b"0", ODD + b"1", ODD + b"2"]
    assert all((r.task_name, r.hostname, r.uid, r.username) == ("scratch", HOST, 1001, "alice")
               for r in rows)


def test_moved_files_pages_and_filters(database):
    journal_ = Journal(database, "scratch", HOST, None)
    for i in range(7):
        journal_.record(record(ODD + str(i).encode(), username="alice" if i % 2 else "bob"))
    journal_.record(record(b"/x/skipped", outcome="skipped"))
    journal_.record(record(b"/x/deleted", action="delete", destination=None))
    journal_.flush()
    every = list(moved_files(database, "scratch", HOST, page=2))
    assert [m.path for m in every] == [ODD + str(i).encode() for i in range(7)]
    assert len(list(moved_files(database, "scratch", HOST, username="alice", page=2))) == 3
    assert list(moved_files(database, "scratch", "another-host")) == []
    assert list(moved_files(database, "scratch", HOST, since=utcnow() + timedelta(hours=1))) == []


@needs_root
def test_scan_id_links_rows_to_their_scan(clean_tree, database):
    with database.session() as session:
        scan = Scan(run_id="r1", task_name="scratch", hostname=HOST,
                    target_path=str(clean_tree["target"]), kind="full", status="ok",
                    started_at=utcnow())
        session.add(scan)
        session.flush()
        scan_id = scan.id
    make_file(clean_tree["target"] / "old.dat")
    clean_step(database, make_settings(), make_run(make_task(clean_tree["target"], delete=True),
                                                   scan_id=scan_id))
    (row,) = journal(database)
    assert row.scan_id == scan_id and row.action == "delete"


@needs_root
def test_a_crash_mid_run_keeps_the_record_of_what_was_done(clean_tree, clean_db, monkeypatch):
    target = clean_tree["target"]
    for i in range(6):
        make_file(target / f"f{i}", size=100 + i)
    calls = []
    real_delete = cleaner_module.delete_file

    def crash_on_fourth(dir_fd, cand):
        calls.append(cand.name)
        if len(calls) == 4:
            raise RuntimeError("simulated crash")
        real_delete(dir_fd, cand)

    monkeypatch.setattr(cleaner_module, "delete_file", crash_on_fourth)
    run = make_run(make_task(target, delete=True))
    with pytest.raises(RuntimeError), Cleaner.open(clean_db, make_settings(), run,
                                                   journal_batch=2) as cleaner:
        cleaner.clean()
    gone = sorted(f"f{i}" for i in range(6) if not (target / f"f{i}").exists())
    rows = journal(clean_db)
    assert len(gone) == 3
    done = [r for r in rows if r.outcome == "done"]
    assert sorted(os.path.basename(bytes(r.path)).decode() for r in done) == gone
    # the act the crash interrupted has its durable intent: the next run settles it
    (pending,) = [r for r in rows if r.outcome == "pending"]
    assert (target / os.path.basename(bytes(pending.path)).decode()).exists()


@needs_root
def test_a_journal_that_cannot_be_written_stops_cleaning(clean_tree, clean_db):
    target = clean_tree["target"]
    for i in range(5):
        make_file(target / f"f{i}")
    run = make_run(make_task(target, delete=True))
    with Cleaner.open(clean_db, make_settings(), run, journal_batch=1) as cleaner:
        Action.__table__.drop(clean_db.engine)  # the journal breaks once cleaning started
        summary = cleaner.clean()
    assert summary.error and "journal" in summary.error
    # write-ahead: the first intent could not be committed, so nothing was deleted
    assert all((target / f"f{i}").exists() for i in range(5))
