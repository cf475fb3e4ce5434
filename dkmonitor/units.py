"""Human-readable sizes, counts and times, for tables, mail and JSON."""

from __future__ import annotations

import time
from datetime import datetime

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(count: float | None) -> str:
    """1536 -> '1.50 KiB': binary units, three significant digits, the unit that fits."""
    if count is None:
        return "-"
    value = float(count)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1024:
        return f"{sign}{int(value)} B"
    unit = _UNITS[-1]
    for candidate in _UNITS[1:]:
        value /= 1024
        # Step up when rounding would reach the next unit (1048575 B is 1.00 MiB, not
        # 1024 KiB): from 1023.5 on, the whole-number text below rounds to "1024".
        # Deciding on the number, not on formatted text, keeps this cheap: `view users`
        # formats 15,000 sizes.
        if value < 1023.5:
            unit = candidate
            break
    digits = 0 if value >= 99.95 else (1 if value >= 9.995 else 2)
    return f"{sign}{value:.{digits}f} {unit}"


def human_count(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


def counted(count: int, noun: str) -> str:
    """``1 file``, ``2 files``: a count with its noun, plural only when it is not one."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def iso_utc(moment: datetime) -> str:
    """A stored (naive, UTC) time as JSON shows it: ``2025-01-01T02:00:00Z``."""
    return moment.isoformat(timespec="seconds") + "Z"


def epoch_iso_utc(epoch: float) -> str:
    """Epoch seconds as ``iso_utc`` writes them (the announced purge's lists and summaries)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def epoch_minute_utc(epoch: float) -> str:
    """Epoch seconds for a person, to the minute: ``2026-12-14 08:00 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
