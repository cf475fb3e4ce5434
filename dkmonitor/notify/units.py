"""Byte counts in the unit that fits, for mail bodies and the dry-run listing.

Binary (IEC) units, as ``du -h`` and ``df -h`` print them, so the number a user
reads in a mail matches what they see when they check for themselves:
``512 B``, ``1.5 KiB``, ``20.0 MiB``, ``3.2 GiB``, ``1.1 TiB``, ``2.0 PiB``.
"""

from __future__ import annotations

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
STEP = 1024


def human_size(size: int | float) -> str:
    """The largest unit in which ``size`` is at least 1, one decimal (bytes: none)."""
    value = float(max(size, 0))
    if value < STEP:
        return f"{int(value)} B"
    index = 0
    while value >= STEP and index < len(UNITS) - 1:
        value /= STEP
        index += 1
    # 1023.96 KiB would print as "1024.0 KiB": step up instead.
    if round(value, 1) >= STEP and index < len(UNITS) - 1:
        value /= STEP
        index += 1
    return f"{value:.1f} {UNITS[index]}"
