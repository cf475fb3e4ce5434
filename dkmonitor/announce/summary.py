"""What a full run publishes for each user, and how ``dkmonitor me`` reads it back.

Per task, each user gets ``{task}.json`` (a ``Summary``: their usage, what is
announced for them and when, their exemptions) and, when files are
announced, ``{task}.list``: ``#`` comment lines, then one line per file,

    size_bytes<TAB>last_use_iso<TAB>purge_after_iso<TAB>escaped_path

Paths are escaped so that every line is printable ASCII and one line is one
file whatever bytes a name holds: every byte outside printable ASCII
(0x20-0x7e), and the backslash itself, is written ``\\xHH`` (two lowercase
hex digits). The runs write these files, ``me`` only streams them; the
authoritative record of what was announced is root's, never this copy.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple, TypedDict, cast

__all__ = [
    "SUMMARY_VERSION", "Announced", "Exemption", "ListEntry", "Summary", "Usage",
    "dump_summary", "escape_path", "list_line", "parse_list_line", "read_summaries",
    "summary_from_json", "unescape_path",
]

SUMMARY_VERSION = 1
MAX_SUMMARY_BYTES = 16 << 20  # a summary is small; anything bigger is not one

class Usage(TypedDict):
    files: int
    bytes: int
    allocated_bytes: int
    old_files: int
    old_bytes: int
    share_percent: float  # allocated bytes over the file system's size (metrics.share_percent)


class Announced(TypedDict):
    files: int
    bytes: int
    first_notice_at: str  # ISO 8601 UTC with Z, like every time here
    earliest_purge_at: str
    final_notice_at: str | None  # when the final reminder was sent; None: not yet
    list: str  # the list file's name, in the same directory


class Exemption(TypedDict):
    id: int
    user: str | None
    path: str | None
    until: str
    reason: str
    expired: bool


class Summary(TypedDict):
    version: int
    task: str
    hostname: str
    target: str
    scanned_at: str
    disk_percent: float
    old_file_threshold_days: float
    age_basis: str
    usage: Usage
    announced: Announced | None  # None: nothing announced for this user
    exemptions: list[Exemption]


# key -> accepted JSON kinds; "null" allows None
_NUMBER = ("int", "float")
_SPEC: dict[str, dict[str, tuple[str, ...]]] = {
    "summary": {
        "version": ("int",), "task": ("str",), "hostname": ("str",), "target": ("str",),
        "scanned_at": ("str",), "disk_percent": _NUMBER, "old_file_threshold_days": _NUMBER,
        "age_basis": ("str",), "usage": ("dict",), "announced": ("dict", "null"),
        "exemptions": ("list",),
    },
    "usage": {
        "files": ("int",), "bytes": ("int",), "allocated_bytes": ("int",),
        "old_files": ("int",), "old_bytes": ("int",), "share_percent": _NUMBER,
    },
    "announced": {
        "files": ("int",), "bytes": ("int",), "first_notice_at": ("str",),
        "earliest_purge_at": ("str",), "final_notice_at": ("str", "null"), "list": ("str",),
    },
    "exemption": {
        "id": ("int",), "user": ("str", "null"), "path": ("str", "null"), "until": ("str",),
        "reason": ("str",), "expired": ("bool",),
    },
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    for name, kind in (("int", int), ("float", float), ("str", str), ("dict", dict),
                       ("list", list)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _check(value: Any, spec: str, where: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object")
    for key, kinds in _SPEC[spec].items():
        if key not in value:
            raise ValueError(f"{where}: missing key {key!r}")
        if _kind(value[key]) not in kinds:
            raise ValueError(f"{where}.{key}: expected {' or '.join(kinds)}")


def summary_from_json(value: Any) -> Summary:
    """A parsed JSON value checked against the schema; ValueError saying what is off.

    Keys beyond the schema are kept (a newer run of the same version may add
    some); a different ``version`` is refused.
    """
    if isinstance(value, dict) and value.get("version") != SUMMARY_VERSION:
        raise ValueError(f"summary version {value.get('version')!r}, this dkmonitor reads "
                         f"version {SUMMARY_VERSION}")
    _check(value, "summary", "summary")
    _check(value["usage"], "usage", "usage")
    if value["announced"] is not None:
        _check(value["announced"], "announced", "announced")
        name = value["announced"]["list"]
        if not name or "/" in name or name.startswith("."):
            raise ValueError("announced.list: expected a plain file name")
    for number, item in enumerate(value["exemptions"]):
        _check(item, "exemption", f"exemptions[{number}]")
    return cast(Summary, value)


def dump_summary(summary: Summary) -> bytes:
    """The published text of ``summary`` (for NoticeDir.write(..., [dump_summary(s)]))."""
    return (json.dumps(summary, indent=2) + "\n").encode("ascii")


def read_summaries(directory: Path, problems: list[str] | None = None) -> list[Summary]:
    """Every ``*.json`` summary in ``directory`` (one user's), sorted by task.

    A file that is not a summary of this version is skipped, and said in
    ``problems`` (path and reason); an unreadable directory raises OSError.
    """
    found: list[Summary] = []
    with os.scandir(directory) as entries:
        names = sorted(e.name for e in entries
                       if e.name.endswith(".json") and not e.name.startswith("."))
    for name in names:
        path = directory / name
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SUMMARY_BYTES + 1)
            if len(data) > MAX_SUMMARY_BYTES:
                raise ValueError("too large for a summary")
            found.append(summary_from_json(json.loads(data)))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if problems is not None:
                problems.append(f"{path}: skipped: {reason.splitlines()[0]}")
    return sorted(found, key=lambda summary: summary["task"])


_UNSAFE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")  # outside printable ASCII, or a backslash
_ESCAPES = [b"\\x%02x" % byte for byte in range(256)]
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_HEX2 = re.compile(rb"[0-9a-fA-F]{2}")


def escape_path(raw: bytes) -> str:
    """A path's bytes as one printable ASCII line: odd bytes and ``\\`` become ``\\xHH``."""
    if _UNSAFE.search(raw) is None:  # nearly every path: no copy byte by byte
        return raw.decode("ascii")
    return _UNSAFE.sub(lambda match: _ESCAPES[match[0][0]], raw).decode("ascii")


def unescape_path(text: str) -> bytes:
    """The bytes ``escape_path`` was given; ValueError for text it cannot have written."""
    if _PRINTABLE.fullmatch(text) is None:
        raise ValueError(f"escaped path {text!r}: holds characters outside printable ASCII")
    head, *rest = text.encode("ascii").split(b"\\")
    out = [head]
    for part in rest:
        if part[:1] != b"x" or _HEX2.fullmatch(part[1:3]) is None:
            raise ValueError(f"escaped path {text!r}: a backslash must start \\xHH")
        out += [bytes((int(part[1:3], 16),)), part[3:]]
    return b"".join(out)


class ListEntry(NamedTuple):
    size: int
    last_use: str
    purge_after: str
    path: bytes


def list_line(size: int, last_use: str, purge_after: str, raw_path: bytes) -> bytes:
    """One data line of a list file, newline included."""
    return f"{size}\t{last_use}\t{purge_after}\t{escape_path(raw_path)}\n".encode("ascii")


def parse_list_line(line: str) -> ListEntry | None:
    """A data line back as a ListEntry; None for a comment or blank line; else ValueError."""
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        return None
    fields = line.split("\t")
    if len(fields) != 4 or not fields[0].isdigit():
        raise ValueError(f"list line {line!r}: expected size<TAB>last_use<TAB>"
                         "purge_after<TAB>path")
    return ListEntry(int(fields[0]), fields[1], fields[2], unescape_path(fields[3]))
