"""How one cleaning action reads in the log: one line, odd bytes in paths escaped."""

from __future__ import annotations

import logging

from dkmonitor.clean.journal import DONE, SKIPPED, ActionRecord

log = logging.getLogger("dkmonitor.clean.cleaner")


def log_action(rec: ActionRecord, path: str, destination: str | None, *, dry_run: bool) -> None:
    shown = repr(path)[1:-1]
    prefix = "would " if dry_run else ""
    if rec.outcome == DONE:
        where = f" -> {repr(destination)[1:-1]}" if destination else ""
        log.info("%s%s %s%s (%d bytes, %s)", prefix, rec.action, shown, where, rec.size,
                 rec.username)
    elif rec.outcome == SKIPPED:
        log.info("skipped %s of %s: %s", rec.action, shown, rec.reason)
    else:
        log.warning("failed to %s %s: %s", rec.action, shown, rec.reason)


def os_error_text(exc: Exception) -> str:
    """An OSError's own words (no errno prefix), anything else as it prints."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
