"""Logging for the command line: a rotating log file plus stderr for people.

The log file gets every event at the configured level. stderr gets warnings
and errors only (so cron mails just what needs attention), INFO with -v, and
errors only with -q. Several dkmonitor processes share the file (an hourly
quick run starts while the nightly full run is still writing), so rotation
is coordinated between them (:class:`SharedRotatingFileHandler`).

The log names private paths and users, so as root it is 0600 in a 0700
directory, created without following symlinks in a directory nobody but root
can change (dkmonitor.safefs); a log directory that fails that check is
refused with a warning and the log goes to stderr only. The passwords of the
settings are masked in every line, whichever handler writes it.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os

from dkmonitor.config import Settings
from dkmonitor.safefs import open_checked_dir, open_private

_FORMAT = "%(asctime)s %(hostname)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class _OneLine(logging.Formatter):
    """stderr lines read like the CLI's own messages: 'dkmonitor: warning: ...'."""

    def format(self, record: logging.LogRecord) -> str:
        return f"dkmonitor: {record.levelname.lower()}: {record.getMessage()}"


class _HostField(logging.Filter):
    """Stamp each file line with the host, for logs gathered from many machines."""

    def __init__(self, hostname: str) -> None:
        super().__init__()
        self.hostname = hostname

    def filter(self, record: logging.LogRecord) -> bool:
        record.hostname = self.hostname
        return True


class _Redact(logging.Filter):
    """Mask the settings' secrets in a record, should one slip into a message."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, None
        return True


def _secrets(settings: Settings) -> tuple[str, ...]:
    return (settings.database.url.password or "", settings.email.smtp_password)


class SharedRotatingFileHandler(logging.FileHandler):
    """A size-rotated log file that several processes can write at once.

    With the stock RotatingFileHandler each process rotates on its own count
    of bytes and renames files that another process still has open: lines
    land in the wrong file, and a second rotation can push them past
    ``backup_count`` and out. Here each record is written under an flock on
    ``<log>.lock``: the writer first follows a rotation another process made
    (the path now names another inode: reopen it, as WatchedFileHandler
    does), then rotates if the file is full (``<log>.1`` ... ``<log>.N``, as
    RotatingFileHandler names them), then writes. Records are rare (a few per
    task), the lock is cheap. It is built on FileHandler, not on
    logging.handlers, which imports socket, pickle and queue: a tenth of
    what an hourly ``run quick`` costs.
    """

    def __init__(self, filename: str, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, mode="a", encoding="utf-8")
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._lock_fd = open_private(f"{self.baseFilename}.lock", os.O_WRONLY | os.O_CREAT)

    def _open(self) -> io.TextIOWrapper:
        """The log file, 0600, never through a symlink, never someone else's file."""
        fd = open_private(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError:
            self.handleError(record)
            return
        try:
            self._follow_rotation()
            if self._full(record):
                self._rotate()
            super().emit(record)
        except Exception:
            self.handleError(record)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _follow_rotation(self) -> None:
        if self.stream is None:
            return
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self.stream.fileno())
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino):
            self.stream.close()
            self.stream = self._open()

    def _full(self, record: logging.LogRecord) -> bool:
        """Would this record take the file to ``max_bytes``? (RotatingFileHandler's test)"""
        if os.path.exists(self.baseFilename) and not os.path.isfile(self.baseFilename):
            return False  # never rotate a device or a pipe
        if self.stream is None:
            self.stream = self._open()
        if self.max_bytes <= 0:
            return False
        self.stream.seek(0, 2)
        return self.stream.tell() + len(f"{self.format(record)}\n") >= self.max_bytes

    def _rotate(self) -> None:
        """``<log>.i`` -> ``<log>.i+1`` (the last one dropped), ``<log>`` -> ``<log>.1``."""
        if self.stream:
            self.stream.close()
            self.stream = None
        if self.backup_count > 0:
            for i in range(self.backup_count - 1, 0, -1):
                older, newer = f"{self.baseFilename}.{i}", f"{self.baseFilename}.{i + 1}"
                if os.path.exists(older):
                    if os.path.exists(newer):
                        os.remove(newer)
                    os.rename(older, newer)
            first = f"{self.baseFilename}.1"
            if os.path.exists(first):
                os.remove(first)
            if os.path.exists(self.baseFilename):
                os.rename(self.baseFilename, first)
        self.stream = self._open()

    def close(self) -> None:
        super().close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def configure_logging(settings: Settings, verbosity: int) -> None:
    root = logging.getLogger("dkmonitor")
    root.setLevel(logging.DEBUG)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()

    console = logging.StreamHandler()
    console.setLevel({-1: logging.ERROR, 0: logging.WARNING}.get(verbosity, logging.INFO))
    console.setFormatter(_OneLine())
    # tracebacks of internal errors go to the log file; the person gets one line
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    redact = _Redact(_secrets(settings))
    console.addFilter(redact)
    root.addHandler(console)

    log_dir = settings.logging.log_dir
    try:
        os.close(open_checked_dir(log_dir))  # created 0700; as root: nobody else can change it
        handler = SharedRotatingFileHandler(
            os.path.join(log_dir, "dkmonitor.log"),
            max_bytes=settings.logging.max_bytes,
            backup_count=settings.logging.backup_count,
        )
    except OSError as exc:
        root.warning(
            "cannot write the log in %s (%s); logging to stderr only",
            log_dir,
            exc.strerror or exc,
        )
        return
    handler.setLevel(settings.logging.level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_HostField(settings.hostname))
    handler.addFilter(redact)
    root.addHandler(handler)
