"""Text rendering for people: aligned tables, colours, human units.

Colour comes from termcolor, which already turns itself off when stdout is
not a terminal (and honours NO_COLOR / FORCE_COLOR).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import zip_longest

from termcolor import colored

from dkmonitor.units import human_bytes


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: set[int] | None = None
) -> str:
    """Columns padded to their widest cell; ``right`` holds right-aligned column indexes.

    ``view users`` prints a row per user per target (5,000 at the benchmark's
    site): each cell is measured once, and cells without colour codes — nearly
    all — are padded by ``str.rjust``/``ljust`` rather than in Python.
    """
    cells = [list(row) for row in rows]
    right = right if right is not None else set(range(1, len(headers)))
    lengths = [[_visible_len(cell) for cell in row] for row in cells]
    header_lengths = [len(h) for h in headers]
    widths = [max(column) for column in zip_longest(header_lengths, *lengths, fillvalue=0)]
    lines = [_line(list(headers), header_lengths, widths, right, bold=True)]
    lines += [_line(row, n, widths, right) for row, n in zip(cells, lengths, strict=True)]
    return "\n".join(lines)


def _visible_len(cell: str) -> int:
    """Length without ANSI colour codes."""
    if "\x1b" not in cell:
        return len(cell)
    length, skipping = 0, False
    for ch in cell:
        if ch == "\x1b":
            skipping = True
        elif skipping and ch == "m":
            skipping = False
        elif not skipping:
            length += 1
    return length


def _line(
    cells: list[str], lengths: list[int], widths: list[int], right: set[int], bold: bool = False
) -> str:
    out = []
    for i, cell in enumerate(cells):
        width = widths[i]
        if lengths[i] == len(cell):  # no colour codes: the str methods pad it
            out.append(cell.rjust(width) if i in right else cell.ljust(width))
        else:
            pad = " " * (width - lengths[i])
            out.append(pad + cell if i in right else cell + pad)
    text = "  ".join(out).rstrip()
    return colored(text, attrs=["bold"]) if bold else text


def change(delta: int | None) -> str:
    """Growth in red, shrinking in green, as the original dkmonitor showed it."""
    if delta is None:
        return "-"
    if delta == 0:
        return "="
    text = ("+" if delta > 0 else "-") + human_bytes(abs(delta))
    return colored(text, "red" if delta > 0 else "green")


def percent(
    value: float | None, warning: float | None = None, critical: float | None = None
) -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}%"
    if critical is not None and value > critical:
        return colored(text, "red", attrs=["bold"])
    if warning is not None and value > warning:
        return colored(text, "yellow")
    return text
