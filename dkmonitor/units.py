"""Human-readable sizes and durations, for tables and mail."""

from __future__ import annotations

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
    for unit in _UNITS[1:]:
        value /= 1024
        digits = 0 if value >= 99.95 else (1 if value >= 9.995 else 2)
        text = f"{value:.{digits}f}"
        # step up when rounding reaches the next unit: 1048575 B is 1.00 MiB, not 1024 KiB
        if float(text) < 1024 or unit == _UNITS[-1]:
            return f"{sign}{text} {unit}"
    raise AssertionError("unreachable")


def human_count(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"
