"""Reading a list's records: plain, .gz or .zst, in batches, noting how the stream ended.

Kept apart from the aggregation (fromlist.py, which re-exports the names the
CLI uses) so each stays small: this module knows the list file, its bytes and
its compression, not files and owners.
"""

from __future__ import annotations

import gzip
import importlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from dkmonitor.scan.listformats import FORMATS

_CHUNK = 1 << 20


class ByteStream(Protocol):
    """What a list is read through: a file, a gzip or zstandard reader, a pipe."""

    def read(self, size: int = -1, /) -> bytes: ...


def zstandard_module() -> Any | None:
    """The zstandard module (``pip install 'dkmonitor[zstd]'``), or None."""
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


class ListError(ValueError):
    """The list cannot be read at all (unknown format, no zstd support): exit 2."""


@dataclass(frozen=True)
class ListSource:
    """A list file and its format, as given by ``--from-list`` and ``--list-format``."""

    path: str
    list_format: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def check_list(source: ListSource) -> None:
    """Refuse up front what cannot work, with one line that says how to fix it."""
    if source.list_format not in FORMATS:
        raise ListError(
            f"unknown list format {source.list_format!r}; use one of {', '.join(FORMATS)}"
        )
    if not os.access(source.path, os.R_OK) or os.path.isdir(source.path):
        raise ListError(f"list {source.path}: not a readable file")
    if source.path.endswith(".zst") and zstandard_module() is None and shutil.which("zstd") is None:
        raise ListError(
            f"list {source.path}: reading .zst needs pip install 'dkmonitor[zstd]' "
            "or the zstd command (Debian: apt-get install zstd)"
        )


@contextmanager
def open_list(path: str, use_module: bool = True) -> Iterator[ByteStream]:
    """The list's bytes, decompressed on the fly: .gz (gzip), .zst (zstandard or zstd -dc)."""
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            yield handle
        return
    if not path.endswith(".zst"):
        with open(path, "rb", buffering=_CHUNK) as handle:
            yield handle
        return
    module = zstandard_module() if use_module else None
    if module is not None:
        with open(path, "rb") as raw:
            yield _ZstdReader(module, raw)
        return
    with subprocess.Popen(["zstd", "-dcq", "--", path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        yield _ZstdPipe(process)


class _ZstdReader:
    """A .zst list through the zstandard module, frame after frame.

    Its stream reader ends quietly when a file is cut in the middle of a frame;
    a decompression object says whether the frame was complete (``eof``).
    """

    def __init__(self, module: Any, raw: ByteStream) -> None:
        self.module = module
        self.raw = raw
        self.frame = module.ZstdDecompressor().decompressobj()
        self.in_frame = False

    def read(self, size: int = -1, /) -> bytes:
        while True:
            # lists compress about 10:1: 128 KiB in is a block of about the plain size out
            chunk = self.raw.read(_CHUNK // 8)
            if not chunk:
                if self.in_frame:
                    raise EOFError("zstd: the compressed list ends in the middle of a frame")
                return b""
            try:
                data = self._feed(chunk)
            except self.module.ZstdError as exc:
                raise EOFError(f"zstd: {exc}") from exc
            if data:
                return data

    def _feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            if self.frame.eof:
                self.frame = self.module.ZstdDecompressor().decompressobj()
            out.append(self.frame.decompress(chunk))
            self.in_frame = not self.frame.eof
            chunk = self.frame.unused_data if self.frame.eof else b""
        return b"".join(out)


class _ZstdPipe:
    """``zstd -dc``'s output; its failure (a cut or corrupt file) raised at the end of it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def read(self, size: int = -1, /) -> bytes:
        assert self.process.stdout is not None and self.process.stderr is not None
        data = self.process.stdout.read(size)
        if not data and self.process.wait() != 0:
            message = self.process.stderr.read().decode(errors="replace").strip()
            raise EOFError(f"zstd: {message.rsplit(': ', 1)[-1] or 'failed'}")
        return data


class Records:
    """Terminated records of a byte stream, in batches; remembers how it ended.

    ``tail`` is a last record with no terminator (a list cut short), ``failure``
    why the stream itself broke (a truncated or corrupt compressed file).
    """

    def __init__(self, stream: ByteStream, terminator: bytes) -> None:
        self.stream = stream
        self.terminator = terminator
        self.tail = b""
        self.failure = ""

    def __iter__(self) -> Iterator[list[bytes]]:
        """Batches of records (one read buffer each: no generator step per record)."""
        read = self.stream.read
        terminator = self.terminator
        rest = b""
        try:
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    break
                batch = (rest + chunk).split(terminator)
                rest = batch.pop()
                yield batch
        except (EOFError, OSError, ValueError) as exc:  # gzip/zstd: stream cut or corrupt
            self.failure = str(exc) or type(exc).__name__
        self.tail = rest
