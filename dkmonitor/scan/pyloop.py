"""The per-entry loop in Python: the reference, and the fallback without a compiler.

walker.Walker calls :func:`scan_python` once per directory (or the compiled
``_dirscan.scan_dir``, which must give exactly the same numbers:
tests/test_scan_compiled.py). Written for CPython's sake: locals instead of
attribute lookups, no function call per file, counters in lists,
``DirEntry.stat(follow_symlinks=False)`` as the single ``lstat``, made with
``fstatat`` relative to the open directory fd (so at any depth).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from typing import TYPE_CHECKING

from dkmonitor.announce.spool import file_record
from dkmonitor.scan.dirfds import Dir, error_line
from dkmonitor.scan.stats import AGE_EDGES_NS, SIZE_EDGES
from dkmonitor.scan.tally import AGE_BYTES, AGE_FILES, NCOLUMNS, SIZE_BYTES, SIZE_FILES

if TYPE_CHECKING:
    from dkmonitor.scan.walker import Item, Walker

_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000
# The loop indexes the tally's lists with literals; this pins the layout.
assert NCOLUMNS == 8 and SIZE_FILES == 0


def scan_python(walker: Walker, fd: int, node: Dir, stack: list[Item]) -> int:
    """One directory through the Python loop; returns how many subdirectories it pushed.

    Per entry: the owner's inode counts (directories, others); per regular
    file with one link: the owner's totals, the target's histograms and the
    directory's own sums for the top directories; files with several links
    wait in ``linked`` (with the smallest directory key they were seen under).

    This is the per-entry loop: locals instead of attribute lookups, no
    call per file, counters in lists.
    """
    config = walker.config
    tally = walker.tally
    by_uid = tally.by_uid
    by_uid_get = by_uid.get
    linked = tally.linked
    hist = tally.hist
    root_dev = config.root_dev
    one_fs = config.one_file_system
    exclude_name = walker.exclude_name
    exclude_path = walker.exclude_path
    excluding = walker.excluding
    prefix = node.prefix() if exclude_path is not None else ""
    dir_key = node.key
    rule = config.age
    is_old = rule.is_old
    basis = rule.basis
    by_used = basis == "used"
    by_atime = basis == "atime"
    by_mtime = basis == "mtime"
    now_ns = walker.now_ns
    old_below = walker.old_below
    young_above = walker.young_above
    append = stack.append
    bisect = bisect_right
    size_edges = SIZE_EDGES
    age_edges = AGE_EDGES_NS
    size_bytes_at = SIZE_BYTES
    age_files_at = AGE_FILES
    age_bytes_at = AGE_BYTES
    pushed = files = total = old_total = 0
    spool = walker.spool
    spool_dir: bytes | None = None if spool is None else spool.directory(
        node.path(), node.dev, node.ino)
    try:
        with walker.scandir(fd) as entries:
            for entry in entries:
                try:
                    if excluding:
                        name = entry.name
                        if exclude_name is not None and exclude_name(name):
                            continue
                        if exclude_path is not None and exclude_path(prefix + name):
                            continue
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:  # vanished since readdir, or unreadable
                    tally.note_error(error_line(node.prefix() + entry.name, exc))
                    continue
                kind = st.st_mode & _S_IFMT
                if kind != _S_IFREG:
                    counters = by_uid_get(st.st_uid)
                    if counters is None:
                        counters = by_uid[st.st_uid] = [0, 0, 0, 0, 0, 0, 0, 0]
                    if kind != _S_IFDIR:
                        counters[7] += 1  # symlink, device, fifo, socket
                    elif not one_fs or st.st_dev == root_dev:
                        append((node, entry.name, st.st_dev, st.st_ino))
                        pushed += 1
                        counters[6] += 1
                    continue  # (a mount point of another filesystem: not ours)

                if by_used:
                    last = st.st_atime_ns
                    mtime = st.st_mtime_ns
                    if mtime > last:
                        last = mtime
                elif by_atime:
                    last = st.st_atime_ns
                elif by_mtime:
                    last = st.st_mtime_ns
                else:
                    last = st.st_ctime_ns
                age = now_ns - last
                if age < 0:
                    age = 0
                uid = st.st_uid
                size = st.st_size
                if spool is not None and st.st_dev == root_dev and last <= young_above and (
                        last < old_below or is_old(st)):  # a candidate (announce/spool.py)
                    if spool_dir is not None:
                        spool.buffer += spool_dir
                        spool_dir = None
                    spool.buffer += file_record(
                        os.fsencode(entry.name), uid, st.st_gid, st.st_ino, size,
                        st.st_mtime_ns, rule.last_use(st))

                if st.st_nlink > 1:  # counted once, at the end (see Tally.linked)
                    key = (st.st_dev, st.st_ino)
                    known = linked.get(key)
                    if known is None:
                        old = last < old_below or (last <= young_above and is_old(st))
                        linked[key] = (uid, size, st.st_blocks, age, old, dir_key)
                    elif dir_key < known[5]:
                        linked[key] = (*known[:5], dir_key)
                    continue

                counters = by_uid_get(uid)
                if counters is None:
                    counters = by_uid[uid] = [0, 0, 0, 0, 0, 0, 0, 0]
                counters[0] += 1
                counters[1] += size
                counters[2] += st.st_blocks
                counters[5] += age
                if last <= young_above and (last < old_below or is_old(st)):
                    counters[3] += 1
                    counters[4] += size
                    old_total += size
                files += 1
                total += size
                bucket = bisect(size_edges, size)
                hist[bucket] += 1
                hist[size_bytes_at + bucket] += size
                bucket = bisect(age_edges, age)
                hist[age_files_at + bucket] += 1
                hist[age_bytes_at + bucket] += size
    except OSError as exc:  # the directory went away while being read
        tally.note_error(error_line(node.path(), exc))
    if spool is not None:
        spool.maybe_flush()
    tally.add_dir(dir_key, files, total, old_total)
    return pushed
