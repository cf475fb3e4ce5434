"""What a user is given to read: their list of announced files and their `me` summary.

The list is streamed from the record (a user may have millions of old files):
``list_chunks`` yields ~64 KiB byte strings, never the whole list. Its format
is documented in docs/mail.md: ``#`` comment lines, then one line per file,
``size<TAB>last use<TAB>purge after<TAB>path``, times in UTC, paths escaped as
``summary.escape_path`` does (bytes outside printable ASCII, and the
backslash, as ``\\xHH``) so one file is always one printable line. The lines
themselves are formatted by ``recordfile.list_lines``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from dkmonitor.announce.publish import task_file
from dkmonitor.announce.record import NoticeState
from dkmonitor.announce.summary import SUMMARY_VERSION
from dkmonitor.metrics import share_percent
from dkmonitor.taskrun import TaskRun, UserNotice, UserUsageRow
from dkmonitor.units import epoch_iso_utc


def list_header(run: TaskRun, notice: UserNotice, written_at: float | None = None) -> str:
    """The list's ``#`` lines; ``written_at`` None leaves the time out (for its digest)."""
    task = run.task
    written = epoch_iso_utc(written_at) if written_at is not None else "-"
    verb = "moved to " + (task.relocation_path or "") if task.relocation_path else "deleted"
    return (
        f"# dkmonitor: files of {notice.username} under {run.hostname}:{task.target_path} "
        f"(task {task.name})\n"
        f"# not used for {task.old_file_threshold:g} days; each may be {verb} from its "
        "purge-after date on, unless it is used or changed before then.\n"
        f"# {notice.files} files, {notice.bytes} bytes; list written {written}\n"
        "# size_bytes\tlast_use_utc\tpurge_after_utc\tpath "
        "(bytes outside printable ASCII and \\ written as \\xHH)\n"
    )


def list_chunks(run: TaskRun, notice: UserNotice, lines: Iterable[bytes]) -> Iterator[bytes]:
    """The user's list file: its header, then the lines the record formats
    (``recordfile.list_lines``: about 64 KiB at a time, never the whole list)."""
    yield list_header(run, notice, run.now).encode("ascii")
    yield from lines


def summary_json(
    run: TaskRun,
    user: UserUsageRow,
    notice: UserNotice | None,
    exemptions: Iterable[dict[str, Any]],
    state: NoticeState | None,
) -> bytes:
    """The `dkmonitor me` summary of one user for one task (schema: announce/summary.py)."""
    task = run.task
    announced = None
    if notice is not None:
        final = state.final_sent_at if state is not None and state.final_for == notice.purge_at \
            else None
        if notice.mail == "purge-final-notice":  # sent by this run, right after publishing
            final = run.now
        announced = {
            "files": notice.files,
            "bytes": notice.bytes,
            "first_notice_at": epoch_iso_utc(notice.first_at),
            "earliest_purge_at": epoch_iso_utc(notice.purge_at),
            "final_notice_at": epoch_iso_utc(final) if final is not None else None,
            "list": task_file(task.name, "list"),
        }
    payload = {
        "version": SUMMARY_VERSION,
        "task": task.name,
        "hostname": run.hostname,
        "target": task.target_path,
        "scanned_at": epoch_iso_utc(run.now),
        "disk_percent": round(run.disk.percent, 2),
        "old_file_threshold_days": task.old_file_threshold,
        "age_basis": task.age_basis,
        "usage": {
            "files": user.files,
            "bytes": user.bytes,
            "allocated_bytes": user.allocated_bytes,
            "old_files": user.old_files,
            "old_bytes": user.old_bytes,
            "share_percent": share_percent(user.allocated_bytes, run.disk.total) or 0.0,
        },
        "announced": announced,
        "exemptions": [
            {key: value for key, value in row.items() if key != "owner_uid"}
            for row in exemptions if row.get("owner_uid") == user.uid
        ],
    }
    # one line: without ``indent`` json uses its C encoder (a run writes one per user)
    return (json.dumps(payload, sort_keys=True) + "\n").encode("utf-8")
