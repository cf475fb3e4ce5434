"""`--from-list`: damaged, truncated and compressed lists; never a crash, always a count.

Malformed records and records outside the target are errors with their line
number (the first few kept as samples), the rest of the list still counts; a
list cut in the middle of a record, or a compressed list cut short, is an
error too. Compressed lists (.gz, .zst through the zstandard module or the
zstd command) give the numbers of the plain list.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time

import pytest

from dkmonitor.scan import ScanOptions, scan_tree
from dkmonitor.scan.fromlist import ListError, ListSource, check_list, scan_list
from dkmonitor.scan.stats import ScanResult
from tests.test_fromlist_formats import assert_same, build_tree, find_list, gpfs_list, lfs_list


@pytest.fixture(autouse=True, params=["compiled", "pure-python"])
def list_reader(request, monkeypatch):
    """Every test reads its lists with the compiled helper (when built) and without it."""
    if request.param == "pure-python":
        monkeypatch.setenv("DKM_LIST_PURE_PYTHON", "1")


@pytest.fixture
def now() -> int:
    return int(time.time())


@pytest.fixture
def tree(tmp_path, now):
    root = build_tree(tmp_path / "target", now)
    return root, ScanOptions(old_days=90, now=float(now))


def records(path, terminator: bytes) -> list[bytes]:
    return path.read_bytes().split(terminator)[:-1]


def read(path, list_format, root, options, **kw) -> ScanResult:
    return scan_list(ListSource(str(path), list_format), str(root), options, **kw)


def test_malformed_find_records_are_counted_with_their_line_numbers(tmp_path, tree):
    root, options = tree
    good = records(find_list(root, tmp_path / "good.find"), b"\0")
    dev = b"%d" % os.stat(root).st_dev  # another device's records are skipped, as by -xdev
    bad = [b"garbage", b"1 2 3", dev + b" 5 1 1001 x12 8 1.0 1.0 1.0 f " + bytes(root) + b"/x",
           dev + b" 5 1 1001 12 8 1.0 1.0 1.0 Q " + bytes(root) + b"/y",
           dev + b" 5 1 1001 12 8 17x.5 17x.5 1.0 f " + bytes(root) + b"/z"]
    mixed = good[:3] + bad + good[3:]
    listing = tmp_path / "mixed.find"
    listing.write_bytes(b"\0".join(mixed) + b"\0")
    listed = read(listing, "find", root, options)
    assert listed.errors == len(bad)
    assert [sample.split(":")[0] for sample in listed.error_samples] == [
        f"mixed.find line {n}" for n in range(4, 4 + len(bad))]
    assert all("malformed record" in sample for sample in listed.error_samples)
    clean = scan_tree(str(root), options)
    assert listed.by_uid == clean.by_uid and listed.directories == clean.directories


@pytest.mark.parametrize("list_format, writer, terminator", [
    ("gpfs", gpfs_list, b"\n"), ("lfs", lfs_list, b"\n")])
def test_malformed_lines_of_line_formats(tmp_path, now, list_format, writer, terminator):
    root = build_tree(tmp_path / "target", now, newline_names=False)
    options = ScanOptions(old_days=90, now=float(now))
    good = records(writer(root, tmp_path / "good"), terminator)
    bad = [b"", b"12 34", b"12 34 0  nonsense -- " + bytes(root) + b"/x",
           b"5 1 1001 12 8 1 1 1 f"]
    listing = tmp_path / "mixed"
    listing.write_bytes(b"\n".join(good[:2] + bad + good[2:]) + b"\n")
    listed = read(listing, list_format, root, options)
    assert listed.errors == len(bad)
    assert listed.error_samples[0].startswith("mixed line 3: malformed record")
    assert listed.by_uid == scan_tree(str(root), options).by_uid


def test_only_the_first_errors_are_kept_as_samples(tmp_path, tree):
    root, options = tree
    listing = tmp_path / "junk.find"
    listing.write_bytes(find_list(root, tmp_path / "good").read_bytes() + b"junk\0" * 1000)
    listed = read(listing, "find", root, options)
    assert listed.errors == 1000 and len(listed.error_samples) == ScanResult.MAX_ERROR_SAMPLES
    assert listed.by_uid == scan_tree(str(root), options).by_uid


@pytest.mark.parametrize("content", [b"", b"junk\0" * 3, b"OTHER"])
def test_a_list_with_nothing_of_the_target_fails_instead_of_storing_zeros(
        tmp_path, tree, content):
    """An empty list, garbage, or a list of another tree (or with relative paths)."""
    root, options = tree
    if content == b"OTHER":
        other = tmp_path / "other"
        other.mkdir()
        (other / "f").write_bytes(b"x")
        content = find_list(other, tmp_path / "other.find").read_bytes()
    listing = tmp_path / "wrong.find"
    listing.write_bytes(content)
    with pytest.raises(ListError, match="is the target .* or below it"):
        read(listing, "find", root, options)


@pytest.mark.parametrize("list_format, writer, terminator", [
    ("find", find_list, b"\0"), ("gpfs", gpfs_list, b"\n"), ("lfs", lfs_list, b"\n")])
def test_a_list_cut_in_the_middle_of_a_record_says_so(tmp_path, now, list_format, writer,
                                                      terminator):
    root = build_tree(tmp_path / "target", now, newline_names=False)
    options = ScanOptions(old_days=90, now=float(now))
    whole = writer(root, tmp_path / "whole").read_bytes()
    count = whole.count(terminator)
    cut = tmp_path / "cut"
    cut.write_bytes(whole[: whole.rindex(terminator, 0, len(whole) - 1) + 12])
    listed = read(cut, list_format, root, options)
    assert listed.errors == 1
    assert listed.error_samples[0].startswith(f"cut line {count}: truncated record")


def test_gzip_and_zstd_lists_give_the_numbers_of_the_plain_list(tmp_path, tree):
    zstandard = pytest.importorskip("zstandard")
    root, options = tree
    plain = find_list(root, tmp_path / "list.find")
    packed_gz = tmp_path / "list.find.gz"
    packed_gz.write_bytes(gzip.compress(plain.read_bytes()))
    packed_zst = tmp_path / "list.find.zst"
    data = plain.read_bytes()
    half = data.index(b"\0", len(data) // 2) + 1  # two frames, as pzstd or zstd -T writes
    packed_zst.write_bytes(zstandard.ZstdCompressor().compress(data[:half])
                           + zstandard.ZstdCompressor().compress(data[half:]))
    walked = scan_tree(str(root), options)
    assert_same(read(packed_gz, "find", root, options), walked)
    assert_same(read(packed_zst, "find", root, options), walked)
    if shutil.which("zstd") is None:
        pytest.skip("no zstd command (scripts/test.sh installs it)")
    assert_same(read(packed_zst, "find", root, options, use_zstandard=False), walked)


def test_a_compressed_list_cut_short_is_an_error_not_a_crash(tmp_path, tree):
    zstandard = pytest.importorskip("zstandard")
    root, options = tree
    data = find_list(root, tmp_path / "list.find").read_bytes() * 3000  # several MiB
    gz = gzip.compress(data)
    (tmp_path / "cut.find.gz").write_bytes(gz[: len(gz) // 2])
    listed = read(tmp_path / "cut.find.gz", "find", root, options)
    assert any("the list ends early" in s for s in listed.error_samples), listed.error_samples
    (tmp_path / "junk.find.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(ListError, match="the list ends early .Not a gzipped file"):
        read(tmp_path / "junk.find.gz", "find", root, options)
    zst = zstandard.ZstdCompressor().compress(data)
    (tmp_path / "cut.find.zst").write_bytes(zst[: len(zst) // 2])
    if shutil.which("zstd") is not None:
        listed = read(tmp_path / "cut.find.zst", "find", root, options, use_zstandard=False)
        assert listed.errors >= 1
        assert any("ends early" in s or "truncated" in s for s in listed.error_samples)
    listed = read(tmp_path / "cut.find.zst", "find", root, options)
    assert listed.errors >= 1


def test_unusable_sources_are_refused_up_front(tmp_path):
    with pytest.raises(ListError, match="unknown list format 'xfs'"):
        check_list(ListSource(str(tmp_path), "xfs"))
    with pytest.raises(ListError, match="not a readable file"):
        check_list(ListSource(str(tmp_path / "missing"), "find"))
    with pytest.raises(ListError, match="not a readable file"):
        check_list(ListSource(str(tmp_path), "find"))


def test_a_name_with_a_newline_in_an_lfs_list_costs_one_error(tmp_path, now):
    """lfs find's records are lines: a newline in a name splits one record in two.

    The first half still parses (the file is counted, under a shortened name);
    the second is a malformed line. docs/lists.md says so, and points such
    sites to the NUL-terminated find format.
    """
    root = build_tree(tmp_path / "target", now)
    options = ScanOptions(old_days=90, now=float(now))
    listed = read(lfs_list(root, tmp_path / "list.lfs"), "lfs", root, options)
    assert listed.errors == 1
    assert "malformed record" in listed.error_samples[0]
    assert listed.by_uid == scan_tree(str(root), options).by_uid


@pytest.mark.parametrize("text, ns", [
    (b"1796016202.4530975200", 1796016202_453097520),
    (b"1796016202", 1796016202_000000000),
    (b"12.5", 12_500000000),
    (b"-1.5000000000", -1_500000000),
])
def test_find_and_lfs_timestamps(text, ns):
    from dkmonitor.scan.listformats import epoch_ns

    assert epoch_ns(text) == ns


def test_gpfs_timestamps_with_either_separator_and_any_precision(tmp_path, now):
    """'2026-01-15 12:00:00.5' and '2026-01-15@12:00:00' (mmapplypolicy's message form)."""
    root = tmp_path / "target"
    root.mkdir()
    (root / "f").write_bytes(b"x")
    st = os.lstat(root / "f")
    listing = tmp_path / "list"
    lines = []
    for number, stamp in enumerate(("2020-02-29 23:59:59.5", "2020-02-29@23:59:59",
                                    "2020-02-29 23:59:59.123456789")):
        show = f"0|1|{st.st_blocks // 2}|1|-rw-r--r--|{stamp}|{stamp}|{stamp}"
        lines.append(f"{number} 1 0  {show.replace(' ', '%20')} -- {root}/f{number}\n")
    listing.write_text("".join(lines))
    base = 1583020799  # 2020-02-29 23:59:59 UTC
    options = ScanOptions(old_days=1, now=float(base + 10))
    listed = read(listing, "gpfs", root, options)
    assert listed.errors == 0, listed.error_samples
    usage = listed.by_uid[0]
    assert usage.files == 3 and usage.old_files == 0
    assert usage.age_seconds == pytest.approx(9.5 + 10 + (10 - 0.123456789))


def test_a_malformed_record_leaves_no_trace_in_any_number(tmp_path, tree):
    """Nothing of a bad record is counted: no stray owner, directory or histogram entry."""
    root, options = tree
    good = records(find_list(root, tmp_path / "good.find"), b"\0")
    dev = b"%d" % os.stat(root).st_dev
    target = bytes(root)
    bad = [dev + b" 5 1 7777 x12 8 1.0 1.0 1.0 f " + target + b"/a/x",
           dev + b" 5 2 7777 12 8 1.0 1.0 1.0 Q " + target + b"/a/y",
           dev + b" 5 2 77x7 4096 8 1.0 1.0 1.0 d " + target + b"/a/z",
           dev + b" 5 2 7777 12 8 1.0 1.0 1.0 f " + target]  # the target as a file
    listing = tmp_path / "mixed.find"
    listing.write_bytes(b"\0".join(good[:1] + bad + good[1:]) + b"\0")
    listed = read(listing, "find", root, options)
    assert listed.errors == len(bad)
    assert "is listed as type b'f'" in listed.error_samples[-1]
    clean = scan_tree(str(root), options)
    assert 7777 not in listed.fileless_owners and 7777 not in listed.by_uid
    assert (listed.by_uid, listed.fileless_owners) == (clean.by_uid, clean.fileless_owners)
    assert listed.size_histogram == clean.size_histogram
    assert listed.top_dirs_by_bytes == clean.top_dirs_by_bytes
    assert listed.directories == clean.directories
