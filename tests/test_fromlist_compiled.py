"""The list reader's compiled helper (_listparse.c) gives exactly the Python loop's numbers.

The helper is optional and reads only plain records, handing every other one to
the Python loop; these lists are made of the records where the two could part:
owners and directories that change at every record, hard links, times on the
age threshold, sizes at the helper's digit limit and sums that would overflow
64 bits, fields Python's ``int`` reads and the helper does not (``+1``,
``01``, ``1_0``), other devices, records outside the target, unknown types and
broken records. Each list is read both ways and every field compared.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from dkmonitor.scan import listcompiled
from dkmonitor.scan.fromlist import ListSource, scan_list
from dkmonitor.scan.stats import ScanOptions, ScanResult
from tests.test_fromlist_formats import build_tree, find_list, gpfs_list, gpfs_time, lfs_list

DAY = 86400
NS = 10**9


@pytest.fixture(autouse=True)
def compiled_helper() -> None:
    if not listcompiled.COMPILED:
        if os.environ.get("CI") == "true":
            pytest.fail("dkmonitor.scan._listparse was not built (needs gcc and python3-dev)")
        pytest.skip("dkmonitor.scan._listparse is not built")


def both(path, list_format: str, root, options: ScanOptions) -> ScanResult:
    source = ListSource(str(path), list_format)
    fast = scan_list(source, str(root), options, compiled=True)
    slow = scan_list(source, str(root), options, compiled=False)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    return fast


def stamp(ns: int) -> bytes:
    return b"%d.%09d0" % divmod(ns, NS)


def record(root: bytes, rel: bytes, *, uid: bytes = b"1001", size: bytes = b"10",
           nlink: bytes = b"1", kind: bytes = b"f", dev: bytes = b"7", ino: int = 5,
           atime: bytes = b"", mtime: bytes = b"", blocks: bytes = b"8") -> bytes:
    now = int(time.time()) * NS
    atime = atime or stamp(now - 3 * DAY * NS)
    mtime = mtime or stamp(now - 100 * DAY * NS)
    return b" ".join((dev, b"%d" % ino, nlink, uid, size, blocks, atime, mtime, mtime, kind,
                      root + b"/" + rel))


def adversarial(root: bytes, now: int) -> list[bytes]:
    edge = (now - 90 * DAY) * NS
    big = b"9" * 18
    rows = [record(root, b"", kind=b"d")[:-1]]  # the target itself (no trailing slash)
    for n in range(40):  # owners and directories change at every record, or not
        rows.append(record(root, b"d%d/f%d" % (n % 3, n), uid=b"%d" % (1000 + n % 2), ino=n))
    rows += [
        record(root, b"d0", kind=b"d"), record(root, b"d0/l", kind=b"l"),
        record(root, b"d0/q", kind=b"Q"),  # unknown type
        record(root, b"d0/h1", nlink=b"2", ino=900), record(root, b"d1/h1", nlink=b"2", ino=900),
        record(root, b"d0/n01", nlink=b"01"), record(root, b"d0/plus", size=b"+12"),
        record(root, b"d0/under", size=b"1_0"), record(root, b"d0/u0", uid=b"01001"),
        record(root, b"d0/bad-owner", kind=b"d", uid=b"77x7"), record(root, b"d0/x", uid=b"x"),
        record(root, b"d0/big", size=big), record(root, b"d0/bigger", size=b"1" + big),
        record(root, b"d0/bigblocks", blocks=big),
        record(root, b"d0/other-dev", dev=b"8"), record(b"/elsewhere", b"x"),
        record(root, b"d0/short-time", atime=b"1700000000.5", mtime=b"1700000000.5"),
        record(root, b"d0/neg", atime=b"-100.0000000000", mtime=b"-100.0000000000"),
        record(root, b"d0/whole", atime=b"1700000000", mtime=b"1700000001"),
        record(root, b"d0/mixed", atime=b"1700000000.5000000000", mtime=b"1700000001"),
        record(root, b"d0/far", atime=b"9999999999.0000000000", mtime=b"99999999999"),
        record(root, b"d0/far2", atime=b"8999999999", mtime=b"9000000000.0000000000"),
        b"garbage", b"", record(root, b"d0/with space/and more"),
        record(root, b"d0/", kind=b"f"),
    ]
    # on the threshold and at the edges of the slack within which Python decides
    for offset in (-1, 0, 1, *range(-10_003, -9_996), *range(9_996, 10_003)):
        rows.append(record(root, b"d2/edge%d" % offset, atime=stamp(edge + offset),
                           mtime=stamp(edge + offset)))
    # sums past 2**62: the helper must stop, fold and go on
    rows += [record(root, b"d2/huge%d" % n, size=big) for n in range(20)]
    return rows


@pytest.mark.parametrize("basis", ["used", "atime", "mtime", "ctime"])
def test_every_odd_record_is_read_as_the_python_loop_reads_it(tmp_path, basis):
    now = int(time.time())
    root = tmp_path / "target"
    root.mkdir()
    listing = tmp_path / "odd.find"
    listing.write_bytes(b"\0".join(adversarial(os.fsencode(root), now)) + b"\0")
    listed = both(listing, "find", root, ScanOptions(old_days=90, now=float(now),
                                                     age_basis=basis))
    assert listed.by_uid[1001].files > 20
    assert listed.total.bytes > 20 * (10**18 - 1)  # past int64: Python's integers hold it
    assert listed.errors >= 4 and "line " in listed.error_samples[0]


def test_without_one_file_system_other_devices_count(tmp_path):
    now = int(time.time())
    root = tmp_path / "target"
    root.mkdir()
    listing = tmp_path / "odd.find"
    listing.write_bytes(b"\0".join(adversarial(os.fsencode(root), now)) + b"\0")
    both(listing, "find", root, ScanOptions(old_days=90, now=float(now), one_file_system=False))


@pytest.mark.parametrize("list_format", ["find", "lfs", "gpfs"])
def test_a_real_tree_reads_the_same_both_ways(tmp_path, list_format):
    now = int(time.time())
    root = build_tree(tmp_path / "target", now, newline_names=list_format != "lfs")
    writer = {"find": find_list, "lfs": lfs_list, "gpfs": gpfs_list}[list_format]
    listing = writer(root, tmp_path / f"list.{list_format}")
    both(listing, list_format, root, ScanOptions(old_days=90, now=float(now)))


@pytest.mark.parametrize("list_format", ["find", "gpfs"])
def test_the_helper_reads_most_records(tmp_path, monkeypatch, list_format):
    """Not a silent fallback: most records of a plain list go through the helper."""
    root = tmp_path / "target"
    root.mkdir()
    base = os.fsencode(root)
    if list_format == "find":
        rows = [record(base, b"", kind=b"d")[:-1]] + [
            record(base, b"d%d/f%d" % (n // 50, n), ino=n) for n in range(1000)]
    else:
        rows = [gpfs_record(base, b"", mode="drwxr-xr-x")[:-1]] + [
            gpfs_record(base, b"d%d/f%d" % (n // 50, n)) for n in range(1000)]
    listing = tmp_path / f"plain.{list_format}"
    terminator = b"\0" if list_format == "find" else b"\n"
    listing.write_bytes(terminator.join(rows) + terminator)
    read = []
    files = listcompiled._listparse.files

    def counting(batch, start, *args):
        stop = files(batch, start, *args)
        read.append(stop - start)
        return stop

    monkeypatch.setattr(listcompiled._listparse, "files", counting)
    listed = both(listing, list_format, root, ScanOptions(old_days=90, now=time.time()))
    assert listed.total.files == 1000
    assert sum(read) >= 990


def test_the_environment_turns_the_helper_off(monkeypatch):
    monkeypatch.setenv("DKM_LIST_PURE_PYTHON", "1")
    assert not listcompiled.wanted()
    monkeypatch.setenv("DKM_LIST_PURE_PYTHON", "0")
    assert listcompiled.wanted()


def gpfs_record(root: bytes, rel: bytes, *, uid: str = "1001", size: str = "10",
                kb: str = "4", nlink: str = "1", mode: str = "-rw-r--r--", atime: str = "",
                mtime: str = "", head: str = "5 65538 0  ", encode: bool = True) -> bytes:
    now = int(time.time()) * NS
    atime = atime or gpfs_time(now - 3 * DAY * NS)
    mtime = mtime or gpfs_time(now - 100 * DAY * NS)
    show = "|".join((uid, size, kb, nlink, mode, atime, mtime, mtime))
    if encode:
        show = show.replace("|", "%7C").replace(" ", "%20").replace(":", "%3A")
    return head.encode() + show.encode() + b" -- " + root + b"/" + rel


def gpfs_adversarial(root: bytes, now: int) -> list[bytes]:
    edge = (now - 90 * DAY) * NS
    rows = [gpfs_record(root, b"", mode="drwxr-xr-x")[:-1]]
    for n in range(40):
        rows.append(gpfs_record(root, b"d%d/f%d" % (n % 3, n), uid=str(1000 + n % 2)))
    rows += [
        gpfs_record(root, b"d0", mode="drwxr-xr-x"), gpfs_record(root, b"d0/l", mode="lrwx"),
        gpfs_record(root, b"d0/q", mode="Qrw"), gpfs_record(root, b"d0/nomode", mode=""),
        gpfs_record(root, b"d0/h1", nlink="2"), gpfs_record(root, b"d1/h1", nlink="2"),
        gpfs_record(root, b"d0/raw", encode=False), gpfs_record(root, b"d0/lower").replace(
            b"%7C", b"%7c"), gpfs_record(root, b"d0/pct%20name"),
        gpfs_record(root, b"d0/kb", kb="+4"),
        gpfs_record(root, b"d0/at", atime="2026-01-15@12:00:00.5"),
        gpfs_record(root, b"d0/feb30", atime="2024-02-30 00:00:00", mtime="2023-02-29 00:00:00"),
        gpfs_record(root, b"d0/leap", atime="2024-02-29 00:00:00", mtime="2000-02-29 00:00:00"),
        gpfs_record(root, b"d0/y2100", atime="2100-02-29 00:00:00", mtime="2100-02-29 00:00:00"),
        gpfs_record(root, b"d0/old", atime="1969-12-31 23:59:59.5", mtime="1900-02-28 23:59:59"),
        gpfs_record(root, b"d0/nano", atime="2026-01-15 12:00:00.123456789"),
        gpfs_record(root, b"d0/long", atime="2026-01-15 12:00:00.1234567891"),
        gpfs_record(root, b"d0/dot", atime="2026-01-15 12:00:00.", mtime="2026-01-15 12:00:00x"),
        gpfs_record(root, b"d0/hour", atime="2026-01-15 25:61:61", mtime="2026-01-15 25:61:61"),
        gpfs_record(root, b"d0/u", uid="x"), gpfs_record(root, b"d0/ws", head="5\t6 0 \t "),
        gpfs_record(root, b"d0/short", head="5 6 "), b"no separator", b"",
        gpfs_record(b"/elsewhere", b"x"), gpfs_record(root, b"d0/a -- b"),
    ]
    for offset in (-1, 0, 1, -11_000, -10_000, -9_000, 9_000, 10_000, 11_000):
        when = gpfs_time(edge + offset)
        rows.append(gpfs_record(root, b"d2/edge%d" % offset, atime=when, mtime=when))
    rows += [gpfs_record(root, b"d2/huge%d" % n, size="9" * 18, kb="9" * 17) for n in range(20)]
    return rows


@pytest.mark.parametrize("basis", ["used", "atime", "mtime", "ctime"])
def test_every_odd_gpfs_record_is_read_as_the_python_loop_reads_it(tmp_path, basis):
    now = int(time.time())
    root = tmp_path / "target"
    root.mkdir()
    listing = tmp_path / "odd.gpfs"
    listing.write_bytes(b"\n".join(gpfs_adversarial(os.fsencode(root), now)) + b"\n")
    listed = both(listing, "gpfs", root, ScanOptions(old_days=90, now=float(now),
                                                     age_basis=basis))
    assert listed.by_uid[1001].files > 20
    assert listed.errors >= 4 and "line " in listed.error_samples[0]
