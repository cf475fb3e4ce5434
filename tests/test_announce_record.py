"""Root's record of announced files: the scan's spools and the record's build, compiled and not.

The candidates an announcing run lists come from the scan's own walk (the
compiled per-directory loop, or the Python loop) and, when the scan could not
spool them (a list from a site scanner, MPI ranks), from a walk with the
cleaner's selection: all three must name exactly the same files. The record is
built and its list lines formatted by ``_recordio`` (C) or by the reference in
``recordfile``: both must write the same bytes, spilled sorted runs, duplicates
(hard links), exemptions, files just acted on, the previous record's dates and
"nothing changed" included.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dkmonitor.announce import recordfile
from dkmonitor.announce.record import Filters
from dkmonitor.announce.spool import read_spool
from dkmonitor.announce.step import spool_walk
from dkmonitor.clean.select import SelectOptions
from dkmonitor.scan import ScanOptions, scan_tree, walker
from tests.fixtures.ownersets import owner_sets, siphash
from tests.fixtures.tree import TreeBuilder
from tests.test_scan_parallel import build_mixed_tree

pytestmark = pytest.mark.usefixtures("requires_root")


@pytest.fixture(autouse=True)
def compiled() -> None:
    if not (walker.COMPILED and recordfile.compiled()):
        if os.environ.get("CI") == "true":
            pytest.fail("the compiled modules were not built (needs gcc and python3-dev)")
        pytest.skip("the compiled modules are not built here")


def _spooled(fds: tuple[int, ...]) -> set[tuple[object, ...]]:
    found: list[tuple[object, ...]] = []
    for fd in fds:
        for dev, ino, path, fields, name, used in read_spool(fd):
            found.append((dev, ino, path, fields, name, used))
    assert len(found) == len(set(found))  # nothing spooled twice
    return set(found)


def _scan_spools(root: Path, spool_dir: Path, now: float, **options: object
                 ) -> tuple[int, ...]:
    result = scan_tree(str(root), ScanOptions(old_days=30, now=now,
                                              candidate_dir=str(spool_dir),
                                              **options))  # type: ignore[arg-type]
    assert result.candidates
    return result.candidates


def test_every_way_of_finding_candidates_finds_the_same_files(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_mixed_tree(scan_target, tmp_path / "outside")
    scan_target.file("t0/young.dat", uid=1001, size=10, atime_days=1, mtime_days=1)
    scan_target.file("t0/skip.tmp", uid=1001, size=10, atime_days=400, mtime_days=400)
    spools = tmp_path / "spools"
    exclude = ("*.tmp",)
    compiled_one = _spooled(_scan_spools(scan_target.root, spools, scan_now, exclude=exclude))
    compiled_three = _spooled(_scan_spools(scan_target.root, spools, scan_now, exclude=exclude,
                                           workers=3))
    with monkeypatch.context() as patch:
        patch.setattr(walker, "COMPILED", False)
        python = _spooled(_scan_spools(scan_target.root, spools, scan_now, exclude=exclude))
    walked_fd = os.open(spools, os.O_TMPFILE | os.O_RDWR, 0o600)
    root_fd = os.open(scan_target.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        spool_walk(root_fd, SelectOptions(target=str(scan_target.root), old_days=30,
                                          now=scan_now, exclude=exclude), walked_fd)
        walked = _spooled((walked_fd,))
    finally:
        os.close(root_fd)
    assert compiled_one == compiled_three == python == walked
    names = {entry[4] for entry in python}
    assert b"pair.dat" in names and b"f24.dat" in names  # two names of one old inode
    assert b"young.dat" not in names and b"skip.tmp" not in names
    assert b"link.dat" not in names  # a symlink is never a candidate


def _fresh(where: Path) -> int:
    return os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)


def _bytes(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def _build_both(spools: tuple[int, ...], prev: int | None, where: Path, now: float,
                filters: Filters, told_since: dict[int, float | None], root_dev: int,
                known: recordfile.Built | None = None) -> tuple[recordfile.Built, int]:
    """Build with Python and with C (tiny chunks: sorted runs are spilled), the C merge
    on one thread and shared by owner between threads, and with the spilled runs
    merged two at a time into longer ones (several levels): the same bytes every way.
    ``known``: the build of ``prev``, whose users' digests the first two C builds are
    given to reuse (the others digest everything): the same digests either way."""
    digests = {uid: user.digest for uid, user in known.users.items()} if known else {}
    results = []
    for compiled, share_from, fan_in, given in ((False, 0, 0, {}), (True, 1 << 30, 16, digests),
                                                (True, 1, 16, digests), (True, 1, 2, {})):
        out, dropped = _fresh(where), _fresh(where)
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            built = recordfile.build(spools, prev, out, dropped, dir_fd, root_dev, now, filters,
                                     told_since, use_compiled=compiled, chunk_bytes=1 << 14,
                                     share_from=share_from, fan_in=fan_in or 16, known=given)
        finally:
            os.close(dir_fd)
        results.append((built, out, _bytes(out), _bytes(dropped)))
        os.close(dropped)
    (p_built, p_out, p_bytes, p_dropped), *compiled_results = results
    for c_built, _c_out, c_bytes, c_dropped in compiled_results:
        assert c_built == p_built
        assert c_bytes == p_bytes and c_dropped == p_dropped
    os.close(p_out)
    for index, result in enumerate(compiled_results):
        if index != 1:
            os.close(result[1])
    return compiled_results[1][0], compiled_results[1][1]


def test_compiled_and_python_records_are_byte_for_byte_the_same(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    for index in range(1500):  # ~150 KB of entries: several spilled runs of 8 KiB
        scan_target.file(f"bulk/d{index % 13}/file-{index:05}.dat", uid=1001 + index % 3,
                         size=index, atime_days=100, mtime_days=100)
    build_mixed_tree(scan_target, tmp_path / "outside")
    where = tmp_path / "work"
    where.mkdir()
    root_dev = os.stat(scan_target.root).st_dev
    spools = _scan_spools(scan_target.root, where, scan_now, workers=3)  # 3 merge threads
    first, first_fd = _build_both(spools, None, where, scan_now, Filters(), {}, root_dev)
    assert first.count == recordfile.check_header(first_fd)
    entries = list(recordfile.iter_entries(first_fd))
    keys = [(e.uid, e.dev, e.ino) for e in entries]
    assert keys == sorted(set(keys)) and len(entries) == first.count
    assert all(e.announced_at == scan_now for e in entries)
    linked = [e.path for e in entries if e.path in (b"t5/s15/deep/f24.dat", b"t2/s1/pair.dat")]
    assert linked == [b"t2/s1/pair.dat"]  # one inode, two names: listed once, smallest path

    later = scan_now + 3600
    unchanged, _ = _build_both(spools, first_fd, where, later, Filters(),
                               {1001: scan_now}, root_dev, first)
    assert unchanged.unchanged and unchanged.dropped == 0
    assert unchanged.told == {1001: first.users[1001].files}

    (scan_target.root / "bulk" / "d0" / "file-00000.dat").write_bytes(b"changed")
    os.utime(scan_target.root / "bulk" / "d0" / "file-00000.dat", (0, 0))  # still old
    gone = next(e for e in entries if e.uid == 1002)
    acted = recordfile.PAIR.pack(gone.dev, gone.ino)
    # exempt: a directory, one file, and a prefix of names that is no path of its own
    filters = Filters(uids=frozenset({1003}), paths=(b"t1", b"bulk/d1/file-00040.dat",
                                                      b"bulk/d3/file-0000"), acted=acted)
    spools = _scan_spools(scan_target.root, where, later, workers=2)
    second, second_fd = _build_both(spools, first_fd, where, later, filters, {}, root_dev,
                                    first)
    assert not second.unchanged
    after = {e.path: e for e in recordfile.iter_entries(second_fd)}
    assert after[b"bulk/d0/file-00000.dat"].announced_at == later  # rewritten: new date
    assert after[b"bulk/d0/file-00039.dat"].announced_at == scan_now  # kept its date
    assert gone.path not in after and 1003 not in {e.uid for e in after.values()}
    assert not any(path.startswith(b"t1/") for path in after)
    assert b"bulk/d1/file-00040.dat" not in after and b"bulk/d1/file-00027.dat" in after
    assert b"bulk/d3/file-00003.dat" in after
    new = sum(user.new_files for user in second.users.values())  # old since an hour, and 1
    matched = second.count - new + 1  # the rewritten file was in the previous record
    assert second.dropped == first.count - matched

    # Only the last owner's share of the merge changes: the others are copied from
    # the previous record, that one from its own file, and the ranges still fit.
    last_uid = max(second.users)
    changed = next(e for e in after.values() if e.uid == last_uid)
    (scan_target.root / os.fsdecode(changed.path)).write_bytes(b"changed again")
    os.utime(scan_target.root / os.fsdecode(changed.path), (0, 0))
    latest = later + 3600
    spools = _scan_spools(scan_target.root, where, latest, workers=3)
    third, third_fd = _build_both(spools, second_fd, where, latest, filters, {}, root_dev,
                                  second)
    assert not third.unchanged and third.count == second.count and third.dropped == 0
    dates = {e.path: e.announced_at for e in recordfile.iter_entries(third_fd)}
    assert dates == {path: latest if path == changed.path else e.announced_at
                     for path, e in after.items()}
    for uid, user in third.users.items():
        owned = list(recordfile.iter_entries(third_fd, user.start, user.end))
        assert {e.uid for e in owned} == {uid} and len(owned) == user.files

    # The record's last file goes, nothing else changes: every share's entries
    # match the previous record's, but the last share ends early.
    last = list(recordfile.iter_entries(third_fd))[-1]
    names = [p for p in scan_target.root.rglob("*")
             if not p.is_symlink() and p.is_file() and p.lstat().st_ino == last.ino]
    assert names and len(names) == names[0].lstat().st_nlink  # every name of that file
    for name in names:
        name.unlink()
    spools = _scan_spools(scan_target.root, where, latest, workers=3)
    fourth, _ = _build_both(spools, third_fd, where, latest, filters, {}, root_dev, third)
    assert not fourth.unchanged and fourth.count == third.count - 1 and fourth.dropped == 1


def test_compiled_and_python_list_lines_are_the_same(tmp_path: Path) -> None:
    odd = [b"plain/name.dat", b"tab\there", b"new\nline", b"back\\slash", b"\xff\xfe.dat",
           b"caf\xc3\xa9", b"x" * 300]
    times = [0.0, 1.5, 86399.999, 86400.0, 1_700_000_000.25, 4_102_444_800.0, 59.9999999]
    data = bytearray()
    for index, path in enumerate(odd * 3):
        entry = recordfile.Entry(1, index, 1000, 100, index * 1_000_003, 0,
                                 times[index % len(times)], 2,
                                 path, times[(index + 3) % len(times)])
        data += recordfile.pack_entry(entry)
    fd = _fresh(tmp_path)
    os.write(fd, bytes(data))
    compiled = b"".join(recordfile.list_lines(fd, 0, len(data), 30.5 * 86400, b"/scr/\xe9/",
                                              limit=200))
    python = b"".join(recordfile.list_lines(fd, 0, len(data), 30.5 * 86400, b"/scr/\xe9/",
                                            use_compiled=False, limit=200))
    assert compiled == python
    lines = compiled.decode("ascii").splitlines()
    assert len(lines) == len(odd) * 3
    assert lines[1].split("\t")[1] == "1970-01-01T00:00:01Z"  # floored, as time.gmtime does
    assert lines[1].endswith("/scr/\\xe9/tab\\x09here")


def _six_owners(scan_target: TreeBuilder, tmp_path: Path) -> tuple[Path, int]:
    """Owners 1001-1006, forty old files each in three directories; a work directory
    for the spools and records, and the target's device."""
    for uid in range(1001, 1007):
        for index in range(40):
            scan_target.file(f"u{uid}/d{index % 3}/f{index:03}", uid=uid, size=index,
                             atime_days=100, mtime_days=100)
    where = tmp_path / "work"
    where.mkdir()
    return where, os.stat(scan_target.root).st_dev


def test_an_unchanged_users_digest_is_reused_and_any_change_digests_them_again(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    """The compiled merge takes a user's digest from the previous build while all their
    entries are the previous record's; any difference -- first, middle or last entry,
    one added -- means digesting them after all, and the same digest as the reference.
    The digests it is given are wrong on purpose: a reused one shows as given."""
    where, root_dev = _six_owners(scan_target, tmp_path)

    def build(prev: int | None, now: float, compiled: bool,
              known: dict[int, int]) -> tuple[recordfile.Built, int]:
        spools = _scan_spools(scan_target.root, where, now, workers=2)
        out, dropped = _fresh(where), _fresh(where)
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            built = recordfile.build(spools, prev, out, dropped, dir_fd, root_dev, now,
                                     Filters(), {}, use_compiled=compiled,
                                     chunk_bytes=1 << 13, share_from=1, known=known)
        finally:
            os.close(dir_fd)
            os.close(dropped)
        return built, out

    first, first_fd = build(None, scan_now, True, {})
    owned = {uid: [e.path for e in recordfile.iter_entries(first_fd, user.start, user.end)]
             for uid, user in first.users.items()}
    root = scan_target.root
    (root / os.fsdecode(owned[1002][20])).write_bytes(b"rewritten")  # a middle entry
    os.utime(root / os.fsdecode(owned[1002][20]), (0, 0))
    (root / os.fsdecode(owned[1003][0])).unlink()  # the first
    (root / os.fsdecode(owned[1004][-1])).unlink()  # the last
    scan_target.file("u1005/new", uid=1005, atime_days=100, mtime_days=100)  # one more
    later = scan_now + 60
    given = {uid: user.digest ^ 1 for uid, user in first.users.items() if uid != 1006}
    reference, reference_fd = build(first_fd, later, False, {})
    reused, reused_fd = build(first_fd, later, True, given)
    assert _bytes(reused_fd) == _bytes(reference_fd)
    assert reused.users[1001].digest == first.users[1001].digest ^ 1  # reused, as given
    assert reused.users[1001].digest ^ 1 == reference.users[1001].digest
    for uid in range(1002, 1007):
        assert reused.users[uid] == reference.users[uid]
    assert reference.users[1006].digest == first.users[1006].digest  # unchanged, digested
    assert all(reference.users[uid].digest != first.users[uid].digest
               for uid in range(1002, 1006))


def test_the_record_keeps_its_generations_digests_and_uses_only_those(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    """The users' digests are stored with the generation they were taken of, in the
    transaction that makes it current, and a build is given only the current one's."""
    from dkmonitor.announce.record import AnnounceRecord, record_path

    for uid in (1001, 1002):
        for index in range(5):
            scan_target.file(f"u{uid}/f{index}", uid=uid, atime_days=100, mtime_days=100)
    root_dev = os.stat(scan_target.root).st_dev
    spool_dir = tmp_path / "spools"
    spool_dir.mkdir()

    def run(now: float) -> tuple[recordfile.Built, int]:
        spools = _scan_spools(scan_target.root, spool_dir, now)
        with AnnounceRecord.open(tmp_path, "scr") as record:
            built = record.update(spools, root_dev, now, Filters())
            record.commit()
            return built, record.generation

    def stored() -> dict[int, tuple[int, int]]:
        with sqlite3.connect(record_path(tmp_path, "scr")) as db:
            return {uid: (generation, digest & (1 << 64) - 1) for uid, generation, digest
                    in db.execute("SELECT uid, generation, digest FROM entry_digests")}

    first, generation = run(scan_now)
    assert stored() == {uid: (generation, user.digest) for uid, user in first.users.items()}
    with sqlite3.connect(record_path(tmp_path, "scr")) as db:  # planted, to see which is used
        db.execute("UPDATE entry_digests SET digest = 5 WHERE uid = 1001")
        db.execute("UPDATE entry_digests SET digest = 7, generation = generation - 1 "
                   "WHERE uid = 1002")
    second, _ = run(scan_now + 60)
    assert second.unchanged
    assert second.users[1001].digest == 5  # the current generation's: reused
    assert second.users[1002].digest == first.users[1002].digest  # another's: not used


def test_a_users_directory_deeper_than_a_sort_chunk_is_listed_whole(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    """A user decides how deep their directories go: a path longer than a sort
    chunk's whole budget (and than PATH_MAX) is sorted, spilled and carried from one
    chunk to the next like any other, with the same bytes as the reference."""
    old = scan_now - 100 * 86400
    fd = os.open(scan_target.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth in range(40):  # 40 x 255-byte names: a 10 KiB path
            name = f"{depth:03}".ljust(255, "d")
            os.mkdir(name, dir_fd=fd)
            os.chown(name, 1001, 1001, dir_fd=fd)
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
            for index in range(3):
                file = f"f{index}"
                os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
                os.chown(file, 1001, 1001, dir_fd=fd)
                os.utime(file, (old, old), dir_fd=fd)
    finally:
        os.close(fd)
    for index in range(200):  # and enough others to fill several chunks
        scan_target.file(f"flat/file-{index:04}", uid=1002, atime_days=100, mtime_days=100)
    where = tmp_path / "work"
    where.mkdir()
    root_dev = os.stat(scan_target.root).st_dev
    spools = _scan_spools(scan_target.root, where, scan_now, workers=2)
    built, fd = _build_both(spools, None, where, scan_now, Filters(), {}, root_dev)
    paths = [e.path for e in recordfile.iter_entries(fd) if e.uid == 1001]
    assert len(paths) == 120 and max(len(p) for p in paths) > 40 * 256
    assert built.users[1001].files == 120 and built.users[1002].files == 200


def test_a_truncated_record_is_an_error_not_a_crash(tmp_path: Path) -> None:
    data = recordfile.HEADER.pack(recordfile.MAGIC, 1) + recordfile.pack_entry(
        recordfile.Entry(1, 2, 3, 4, 5, 6, 7.0, 8, b"some/path", 9.0))
    fd = _fresh(tmp_path)
    os.write(fd, data[:-3])
    out, dropped = _fresh(tmp_path), _fresh(tmp_path)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    with pytest.raises(OSError):
        recordfile.build((), fd, out, dropped, dir_fd, 1, 10.0, Filters(), {})
    with pytest.raises(ValueError):
        list(recordfile.iter_entries(fd))
    bad = _fresh(tmp_path)
    os.write(bad, struct.pack("=8sQ", b"NOTMINE!", 0))
    with pytest.raises(ValueError):
        recordfile.build((), bad, out, dropped, dir_fd, 1, 10.0, Filters(), {})
    os.close(dir_fd)


def test_a_spool_cut_short_or_out_of_order_is_an_error_in_both_passes(tmp_path: Path) -> None:
    """A spool is root's own unnamed file, but the build does not trust its bytes: a
    record cut short, a file before any directory, an unknown tag are each EINVAL,
    whether the owners' sums are taken first (set_key) or not."""
    from dkmonitor.announce.spool import dir_record, file_record

    good = dir_record(1, 2, b"d") + file_record(b"name", 1000, 100, 7, 1, 0, 1.0)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for data in (good[:-2], good[:30], file_record(b"name", 1000, 100, 7, 1, 0, 1.0),
                     good + b"X" + bytes(30)):
            for key in (b"", SET_KEY):
                spool, out, dropped = _fresh(tmp_path), _fresh(tmp_path), _fresh(tmp_path)
                os.write(spool, data)
                with pytest.raises(OSError) as raised:
                    recordfile.build((spool,), None, out, dropped, dir_fd, 1, 10.0, Filters(),
                                     {}, set_key=key)
                assert raised.value.errno == errno.EINVAL
                for fd in (spool, out, dropped):
                    os.close(fd)
        spool, out, dropped = _fresh(tmp_path), _fresh(tmp_path), _fresh(tmp_path)
        os.write(spool, good)
        built = recordfile.build((spool,), None, out, dropped, dir_fd, 1, 10.0, Filters(), {},
                                 set_key=SET_KEY)
        assert built.count == 1 and built.sets == owner_sets((spool,), SET_KEY)
    finally:
        os.close(dir_fd)


def test_a_first_version_record_is_converted_once_with_its_dates(tmp_path: Path) -> None:
    """The first version kept one SQLite row per file; opening it moves them, dates kept."""
    from dkmonitor.announce.record import AnnounceRecord, record_path

    path = record_path(tmp_path, "scr")
    path.parent.mkdir(mode=0o700)
    rows = [(7, 30 - n, 1000 + n % 2, 100, n, n * 10, 50.0 + n, 2, b"d/f%d" % n, 500.0 + n)
            for n in range(5)]
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE files (dev, ino, uid, gid, size, mtime_ns, used, parent_ino, "
                   "path, announced_at, seen)")
        db.executemany("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?,1)", rows)
        db.execute("CREATE TABLE users (uid INTEGER PRIMARY KEY, last_notice_at REAL, "
                   "final_for REAL, final_sent_at REAL)")
        db.execute("INSERT INTO users VALUES (1000, 510.0, NULL, NULL)")
    os.chmod(path, 0o600)
    for _ in range(2):  # converted by the first open; the second finds the converted one
        with AnnounceRecord.open(tmp_path, "scr") as record:
            entries = list(record.entries())
            assert record.notice_states()[1000].last_notice_at == 510.0
    assert [(e.uid, e.dev, e.ino) for e in entries] == sorted(
        (row[2], row[0], row[1]) for row in rows)
    assert {e.path: e.announced_at for e in entries} == {row[8]: row[9] for row in rows}
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "files" not in tables
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".files") == [
        "scr.1.files"]


_PEAK = """
import os, sys
from dkmonitor.announce import recordfile
from dkmonitor.announce.spool import dir_record, file_record
files, where = int(sys.argv[1]), sys.argv[2]
spools = []
for worker in range(2):  # two scan workers' spools: 64 owners, 200-byte names
    fd = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    os.write(fd, dir_record(1, 2, b"d"))  # and owner 999's ten files first
    os.write(fd, b"".join(file_record(b"first%d" % n, 999, 100, 10 ** 9 + worker * 10 + n, n,
                                      0, 1.0) for n in range(10)))
    for start in range(worker, files, 2000):  # written as it goes, as a scan does
        os.write(fd, b"".join(file_record(b"%0200d" % n, 1000 + n % 64, 100, 10 + n, n, 0,
                                          1.0) for n in range(start, min(start + 2000, files), 2)))
    spools.append(fd)
dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
prev, sets = None, {}
# a first announcement, one merged with it, then the same with every owner but 999
# carried (their records hold spool pages no sort key points to), then with all
for now, carried in ((10.0, None), (20.0, None), (30.0, 999), (40.0, -1)):
    out = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    dropped = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    given = {} if carried is None else {u: s for u, s in sets.items() if u != carried}
    built = recordfile.build(tuple(spools), prev, out, dropped, dir_fd, 1, now,
                             recordfile.Filters(), {}, chunk_bytes=2 << 20, share_from=1,
                             set_key=bytes(16), prev_sets=given)
    assert built.count == files + 20 and (carried is None or built.unchanged), built
    if not built.unchanged:
        prev = out
    sets = built.sets
# VmHWM, not ru_maxrss: that one keeps the peak of the process before exec (pytest's)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def test_building_the_record_takes_the_same_memory_for_four_times_the_files(
        tmp_path: Path) -> None:
    """The spools, the sorted runs and the previous record are read through maps that
    give their pages back: peak memory does not follow the files' ~100 MB. (Between
    fewer files it grows, up to the bounds of the sort's chunk and of the merge's
    windows on its runs: 2 MiB chunks reach them by 100,000 files.)"""
    peaks = []
    for files in (100_000, 400_000):
        done = subprocess.run([sys.executable, "-c", _PEAK, str(files), str(tmp_path)],
                              capture_output=True, text=True, check=True)
        peaks.append(int(done.stdout) / 1024)  # MiB
    assert peaks[1] - peaks[0] < 8, peaks  # 75 MiB more when the maps kept every page


_MANY_RUNS = """
import errno, os, resource, sys
from dkmonitor.announce import recordfile
from dkmonitor.announce.spool import dir_record, file_record
where, fan_in = sys.argv[1], int(sys.argv[2])
spools = []
for worker in range(2):
    fd = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    records = [dir_record(1, 2, b"d")]
    for n in range(worker, 40_000, 2):  # hard links: every tenth inode has two names
        records.append(file_record(b"%0200d" % n, 1000 + n // 10 % 64, 100, 10 + n // 10 * 10
                                   if n % 10 < 2 else 10 + n, n, 0, 1.0))
    os.write(fd, b"".join(records))
    spools.append(fd)
dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
outputs = []
for chunk in (1 << 14, 64 << 20):  # ~1400 sorted runs of 8 KiB, then none
    out = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    dropped = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        built = recordfile.build(tuple(spools), None, out, dropped, dir_fd, 1, 10.0,
                                 recordfile.Filters(), {}, chunk_bytes=chunk, fan_in=fan_in)
    except OSError as exc:
        print(errno.errorcode[exc.errno])
        sys.exit(0)
    outputs.append(os.pread(out, os.fstat(out).st_size, 0))
    assert built.count == 36_000, built.count
assert outputs[0] == outputs[1]
print("same")
"""


def test_a_billion_files_worth_of_runs_keeps_few_files_open(tmp_path: Path) -> None:
    """Sorted runs are merged 16 at a time into longer ones: the ~1,400 runs of this
    build (a billion candidates spill thousands) stay under 128 open files, and the
    record is the one built without spilling. Without it, the build runs out of files."""
    def run(fan_in: int) -> str:
        return subprocess.run([sys.executable, "-c", _MANY_RUNS, str(tmp_path), str(fan_in)],
                              capture_output=True, text=True, check=True).stdout.strip()

    assert run(recordfile.FAN_IN) == "same"
    assert run(1 << 20) == "EMFILE"  # every run kept open until the last merge


SET_KEY = bytes(range(16))


def test_the_owners_sums_are_siphash_as_the_reference_computes_them() -> None:
    """The reference's SipHash gives the paper's test vectors (2-4); the build's 1-3 sums
    are compared with the reference's in the tests below."""
    assert siphash(SET_KEY, b"", 2, 4) == 0x726FDB47DD0E0E31
    assert siphash(SET_KEY, bytes(range(15)), 2, 4) == 0xA129CA6149BE45E5


def test_owners_whose_candidates_did_not_change_are_carried_with_the_same_bytes(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    """An owner whose candidates sum up as at the last build keeps their previous
    entries without being sorted or merged again; the record is byte for byte the
    reference's. A rewritten, removed, added or renamed file, or a new last use,
    changes an owner's sum. Sums given wrong on purpose show that carrying happens."""
    where, root_dev = _six_owners(scan_target, tmp_path)
    root = scan_target.root

    def build(spools: tuple[int, ...], prev: int | None, now: float, compiled: bool,
              prev_sets: dict[int, tuple[int, int]], share_from: int = 1
              ) -> tuple[recordfile.Built, int, bytes]:
        out, dropped = _fresh(where), _fresh(where)
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            built = recordfile.build(spools, prev, out, dropped, dir_fd, root_dev, now,
                                     Filters(), {1003: now}, use_compiled=compiled,
                                     chunk_bytes=1 << 13, share_from=share_from,
                                     set_key=SET_KEY, prev_sets=prev_sets)
            return built, out, _bytes(dropped)
        finally:
            os.close(dir_fd)
            os.close(dropped)

    spools = _scan_spools(root, where, scan_now, workers=2)
    first, first_fd, _ = build(spools, None, scan_now, True, {})
    assert first.sets == owner_sets(spools, SET_KEY)
    # with no previous record, sums given are never used: every owner is listed
    fresh, fresh_fd, _ = build(spools, None, scan_now, True, first.sets)
    assert _bytes(fresh_fd) == _bytes(first_fd) and fresh.count == 240

    owned = {uid: [e.path for e in recordfile.iter_entries(first_fd, user.start, user.end)]
             for uid, user in first.users.items()}
    (root / os.fsdecode(owned[1002][20])).write_bytes(b"rewritten")
    os.utime(root / os.fsdecode(owned[1002][20]), (0, 0))
    (root / os.fsdecode(owned[1003][0])).unlink()
    scan_target.file("u1004/new", uid=1004, atime_days=100, mtime_days=100)
    os.rename(root / os.fsdecode(owned[1005][5]), root / "u1005" / "renamed")
    used = root / os.fsdecode(owned[1006][7])
    os.utime(used, (used.stat().st_atime + 86400, used.stat().st_mtime))  # still old
    later = scan_now + 60
    spools = _scan_spools(root, where, later, workers=2)
    now_sets = owner_sets(spools, SET_KEY)
    assert {uid for uid in now_sets if now_sets[uid] == first.sets[uid]} == {1001}

    reference, reference_fd, reference_dropped = build(spools, first_fd, later, False, {})
    for share_from in (1, 1 << 30):  # the merge shared between threads, and on one
        carried, carried_fd, carried_dropped = build(spools, first_fd, later, True,
                                                     first.sets, share_from)
        assert _bytes(carried_fd) == _bytes(reference_fd)
        assert carried_dropped == reference_dropped
        assert carried.users == reference.users and carried.told == reference.told
        assert (carried.count, carried.dropped) == (reference.count, reference.dropped)
        assert carried.sets == now_sets

    # 1002's sum given as if unchanged: their previous entries are kept as they were
    wrong, wrong_fd, _ = build(spools, first_fd, later, True, {**first.sets, 1002: now_sets[1002]})
    kept = list(recordfile.iter_entries(wrong_fd, wrong.users[1002].start, wrong.users[1002].end))
    assert kept == list(recordfile.iter_entries(first_fd, first.users[1002].start,
                                                first.users[1002].end))
    assert _bytes(wrong_fd) != _bytes(reference_fd)

    # nothing changed since: every owner carried, nothing sorted, nothing written
    spools = _scan_spools(root, where, later + 60, workers=2)
    same, _, _ = build(spools, reference_fd, later + 60, True, now_sets)
    again, _, _ = build(spools, reference_fd, later + 60, False, {})
    assert same.unchanged and again.unchanged
    assert same.users == again.users and same.told == again.told


def test_the_record_keeps_owner_sets_for_their_generation_and_filters_only(
    scan_target: TreeBuilder, tmp_path: Path, scan_now: float
) -> None:
    """The sums are stored with the generation they describe and the filters that
    generation was built with; a build is given them only when both still hold, and
    a run whose clean-up acted on files stores none. Planted sums show which are used."""
    from dkmonitor.announce.record import AnnounceRecord, record_path

    for uid in (1001, 1002):
        for index in range(5):
            scan_target.file(f"u{uid}/f{index}", uid=uid, size=index, atime_days=100,
                             mtime_days=100)
    root = scan_target.root
    root_dev = os.stat(root).st_dev
    spool_dir = tmp_path / "spools"
    spool_dir.mkdir()

    def run(now: float, filters: Filters, acted: tuple[int, int] | None = None
            ) -> recordfile.Built:
        spools = _scan_spools(root, spool_dir, now)
        with AnnounceRecord.open(tmp_path, "scr") as record:
            if acted is not None:
                record.took(*acted)
            built = record.update(spools, root_dev, now, filters)
            record.commit()
            return built

    def db() -> sqlite3.Connection:
        return sqlite3.connect(record_path(tmp_path, "scr"))

    def size_of(built: recordfile.Built, name: bytes) -> int:
        with AnnounceRecord.open(tmp_path, "scr") as record:
            return next(e.size for e in record.entries() if e.path == name)

    first = run(scan_now, Filters())
    with db() as connection:
        key = bytes.fromhex(connection.execute(
            "SELECT value FROM meta WHERE key = 'set_key'").fetchone()[0])
        generation = int(connection.execute(
            "SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        stored = {uid: (gen, total & (1 << 64) - 1, count) for uid, gen, total, count
                  in connection.execute("SELECT uid, generation, sum, count FROM owner_sets")}
    assert len(key) == 16
    assert stored == {uid: (generation, *pair) for uid, pair in first.sets.items()}

    (root / "u1001" / "f0").write_bytes(b"rewritten")
    os.utime(root / "u1001" / "f0", (0, 0))
    planted = owner_sets(_scan_spools(root, spool_dir, scan_now), key)[1001]
    with db() as connection:  # 1001's new sum, planted as if it were the current one's
        connection.execute("UPDATE owner_sets SET sum = ?, count = ? WHERE uid = 1001",
                           (planted[0] - (1 << 64) if planted[0] >> 63 else planted[0],
                            planted[1]))
    second = run(scan_now + 60, Filters())
    assert second.unchanged and size_of(second, b"u1001/f0") == 0  # carried as it was

    third = run(scan_now + 120, Filters(paths=(b"elsewhere",)))  # other filters: not used
    assert not third.unchanged and size_of(third, b"u1001/f0") == len(b"rewritten")

    gone = (root / "u1002" / "f1").stat()
    run(scan_now + 180, Filters(paths=(b"elsewhere",)), (gone.st_dev, gone.st_ino))
    with db() as connection:
        assert connection.execute("SELECT count(*) FROM owner_sets").fetchone()[0] == 0
