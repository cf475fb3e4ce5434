"""Human-readable sizes and durations, for tables and mail."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(count: float | None) -> str:
    """1536 -> '1.5 KiB': binary units, three significant digits, the unit that fits."""
    if count is None:
        return "-"
    value = float(count)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{int(value)} B"
            if value >= 100:
                return f"{sign}{value:.0f} {unit}"
            return f"{sign}{value:.1f} {unit}" if value >= 10 else f"{sign}{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_count(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"
