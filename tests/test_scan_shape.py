"""inodes/directories, histograms and top directories: stored, spooled and read back (both DBs)."""

from __future__ import annotations

import json
from datetime import datetime

from dkmonitor.db.engine import open_database
from dkmonitor.db.export import export_records
from dkmonitor.db.queries import system_records, user_records
from dkmonitor.db.readonly import connect_current
from dkmonitor.db.shape import histograms, top_directories
from dkmonitor.db.store import ScanRecord, store_scan
from dkmonitor.taskrun import HistogramBucket, TopDirectory, UserUsageRow

WHEN = datetime(2025, 3, 4, 2, 0)
RECORD = ScanRecord(
    run_id="shape-1",
    task_name="scratch",
    hostname="h1",
    target_path="/scratch",
    kind="full",
    status="ok",
    started_at=WHEN,
    finished_at=WHEN,
    disk_use_percent=12.5,
    files=3,
    bytes=300,
    inodes=9,
    directories=4,
    users=(
        UserUsageRow(1001, "ann", 2, 200, 8192, 0, 0, 1.0, inodes=6, directories=3),
        UserUsageRow(1002, "bob", 1, 100, 4096, 1, 100, 400.0, inodes=3, directories=1),
    ),
    histograms=(
        HistogramBucket("size", 0, 2, 100),
        HistogramBucket("size", 4096, 1, 200),
        HistogramBucket("age", 0, 2, 200),
        HistogramBucket("age", 365, 1, 100),
    ),
    top_directories=(
        TopDirectory("bytes", 1, "/scratch/ann", 2, 200, 0),
        TopDirectory("bytes", 2, "/scratch/bob", 1, 100, 100),
        TopDirectory("old_bytes", 1, "/scratch/bob", 1, 100, 100),
    ),
)


def test_spooled_record_keeps_every_part():
    assert ScanRecord.from_json(json.loads(json.dumps(RECORD.to_json()))) == RECORD
    older = RECORD.to_json()
    for key in ("histograms", "top_directories", "inodes", "directories"):
        del older[key]
    for user in older["users"]:
        del user["inodes"], user["directories"]
    again = ScanRecord.from_json(older)  # spooled by the version before 0006
    assert again.histograms == () and again.users[0].inodes == 0


def test_stored_shape_reads_back(db_url):
    db = open_database(db_url)
    try:
        with db.session() as session:
            scan_id = store_scan(session, RECORD)
        with db.session() as session:
            exported = list(export_records(session))
    finally:
        db.dispose()
    assert [(r["username"], r["inodes"], r["directories"]) for r in exported] == [
        (None, 9, 4),
        ("ann", 6, 3),
        ("bob", 3, 1),
    ]
    reader = connect_current(db_url)
    assert reader is not None
    with reader:
        users = user_records(reader)
        assert [(r.username, r.inodes, r.directories) for r in users] == [
            ("ann", 6, 3),
            ("bob", 3, 1),
        ]
        assert users[0].as_json()["inodes"] == 6
        (system,) = system_records(reader)
        assert (system.inodes, system.directories) == (9, 4)
        assert histograms(reader, scan_id) == sorted(
            RECORD.histograms, key=lambda b: (b.kind, b.lower_bound)
        )
        assert top_directories(reader, scan_id) == sorted(
            RECORD.top_directories, key=lambda d: (d.ranking, d.rank)
        )
