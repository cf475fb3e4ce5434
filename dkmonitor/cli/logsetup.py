"""Logging for the command line: a rotating log file plus stderr for people.

The log file gets every event at the configured level. stderr gets warnings
and errors only (so cron mails just what needs attention), INFO with -v, and
errors only with -q.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

from dkmonitor.config import Settings

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
    root.addHandler(console)

    log_dir = settings.logging.log_dir
    try:
        os.makedirs(log_dir, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            os.path.join(log_dir, "dkmonitor.log"),
            maxBytes=settings.logging.max_bytes,
            backupCount=settings.logging.backup_count,
            encoding="utf-8",
        )
    except OSError as exc:
        root.warning("cannot write the log in %s (%s); logging to stderr only", log_dir, exc)
        return
    handler.setLevel(settings.logging.level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_HostField(settings.hostname))
    root.addHandler(handler)
