"""The report's charts: matplotlib figures rendered to SVG text for inlining.

Only the object-oriented API (``Figure``), never pyplot: no global figure
state, nothing kept between charts. Every chart is drawn under one
``rc_context``: text becomes paths (``svg.fonttype = 'path'``, so the page
needs no font), no metadata date (the same data gives the same file), and
no mathtext (``$`` in a user name is a dollar sign, not a formula).

The SVG is cut down for inlining in HTML: the XML prolog and DOCTYPE go,
and so do XML comments (matplotlib writes each drawn string into one; user
names are hostile input and have no business in the page's source text).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dkmonitor.report.forecast import FORECAST, Forecast  # noqa: E402

RC: dict[Any, Any] = {
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "dkmonitor",
}
# Readings drawn at most: more than a chart's width in pixels only costs bytes.
MAX_POINTS = 1500
LABEL_CHARS = 28
BLUE, ORANGE, RED, GREY = "#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f"

_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def chart_label(text: str) -> str:
    """A name as a chart shows it: one line, not too long, control characters spelt out.

    The same spelling as the pages' (``\\x1b``), so a name reads the same in both.
    """
    cleaned = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )
    if len(cleaned) > LABEL_CHARS:
        cleaned = cleaned[: LABEL_CHARS - 1] + "\u2026"
    return cleaned


def to_svg(figure: Figure) -> str:
    """The figure as an ``<svg>`` element to inline (no prolog, no comments)."""
    buffer = io.StringIO()
    with warnings.catch_warnings():
        # A name in a script the bundled font lacks (CJK, emoji) is drawn as
        # boxes; the table beside the chart has it right. Not worth a line on
        # stderr, which cron would mail every night.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        # Fixed margins (``_margins``), not bbox_inches="tight": that draws every chart twice.
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = _PROLOG.sub("", buffer.getvalue(), count=1)
    return _COMMENT.sub("", text).strip()


def _margins(figure: Figure, left: float, bottom: float, top: float = 0.12) -> None:
    """Place the axes by margins in inches (room for tick labels, axis label, legend)."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width, right=1 - 0.25 / width, bottom=bottom / height, top=1 - top / height
    )


def _date_numbers(times: Sequence[datetime]) -> list[float]:
    """Times as matplotlib's date numbers (days since its epoch)."""
    return [float(mdates.date2num(when)) for when in times]  # type: ignore[no-untyped-call]


def _thin(times: Sequence[datetime], values: Sequence[float]) -> tuple[list[Any], list[float]]:
    """At most MAX_POINTS readings: the highest reading of each equal slice of time.

    The maximum, not the mean: a disk that was full for an hour was full.
    """
    if len(times) <= MAX_POINTS:
        return list(times), list(values)
    start, end = times[0], times[-1]
    width = (end - start) / MAX_POINTS or timedelta(seconds=1)
    slices: dict[int, tuple[datetime, float]] = {}
    for when, value in zip(times, values, strict=True):
        index = int((when - start) / width)
        kept = slices.get(index)
        if kept is None or value > kept[1]:
            slices[index] = (when, value)
    kept_points = [slices[i] for i in sorted(slices)]
    return [p[0] for p in kept_points], [p[1] for p in kept_points]


def disk_use_chart(
    times: Sequence[datetime],
    percents: Sequence[float],
    fit: Forecast,
    warning: float | None,
    critical: float | None,
) -> str:
    """Disk use over time, the thresholds, and the fitted line out to its forecast."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(8.0, 3.4))
        _margins(figure, left=0.6, bottom=0.75)
        axes = figure.add_subplot()
        xs, ys = _thin(times, percents)
        # matplotlib's own date numbers (days): no per-point datetime conversion at draw time
        axes.plot(_date_numbers(xs), ys, color=BLUE, linewidth=1.2, label="disk use")
        if fit.slope is not None and fit.start is not None and fit.end is not None:
            # Out to the furthest forecast date, but not so far that the
            # history shrinks to a sliver: at most twice its span (and a year).
            ahead = [c.when for c in fit.crossings if c.status == FORECAST and c.when]
            reach = min(max(2 * (fit.end - times[0]), fit.window), timedelta(days=365))
            until = min(max(ahead, default=fit.end), fit.end + reach)
            until = max(until, fit.end + fit.window / 4)
            line = [fit.start, until]
            axes.plot(
                _date_numbers(line),
                [fit.at(t) or 0.0 for t in line],
                color=ORANGE,
                linestyle="--",
                linewidth=1.2,
                label=f"trend (last {fit.window.days} days)",
            )
        for value, colour, name in ((warning, ORANGE, "warning"), (critical, RED, "critical")):
            if value is not None:
                axes.axhline(value, color=colour, linewidth=0.8, linestyle=":", label=name)
        axes.axhline(100.0, color=GREY, linewidth=0.8)
        axes.set_ylim(0, 105)
        axes.set_ylabel("disk use (%)")
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_formatter(formatter)
        # Below the axes: inside, it would hide the very readings it explains.
        figure.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
        return to_svg(figure)


def _unit(values: Sequence[float]) -> tuple[float, str]:
    """The binary unit that suits the largest value: axes then show plain round numbers."""
    largest = max((abs(v) for v in values), default=0.0)
    scale, name = 1.0, "B"
    for index, unit in enumerate(("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"), start=1):
        if largest >= 1024.0**index:
            scale, name = 1024.0**index, unit
    return scale, name


def bar_chart(labels: Sequence[str], values: Sequence[float], xlabel: str) -> str:
    """Horizontal bars of byte counts, largest on top; labels are user names (hostile)."""
    scale, unit = _unit(values)
    with matplotlib.rc_context(RC):
        shown = [chart_label(label) for label in labels]
        height = 0.65 + 0.24 * max(len(labels), 1)
        figure = Figure(figsize=(8.0, height))
        longest = max((len(label) for label in shown), default=1)
        _margins(figure, left=min(0.25 + 0.075 * longest, 2.4), bottom=0.5, top=0.08)
        axes = figure.add_subplot()
        positions = list(range(len(labels)))
        colours = [BLUE if value >= 0 else RED for value in values]
        axes.barh(positions, [v / scale for v in values], color=colours, height=0.7)
        axes.set_yticks(positions, shown)
        axes.invert_yaxis()
        axes.set_xlabel(f"{xlabel} ({unit})")
        axes.grid(axis="y", visible=False)
        return to_svg(figure)


def histogram_chart(labels: Sequence[str], values: Sequence[float], ylabel: str) -> str:
    """Vertical bars per bucket (size or age), in the buckets' own order."""
    scale, unit = _unit(values)
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(8.0, 2.8))
        _margins(figure, left=0.7, bottom=0.85)
        axes = figure.add_subplot()
        positions = list(range(len(labels)))
        axes.bar(positions, [v / scale for v in values], color=BLUE, width=0.8)
        shown = [chart_label(label) for label in labels]
        axes.set_xticks(positions, shown, rotation=30, ha="right", rotation_mode="anchor")
        axes.set_ylabel(f"{ylabel} ({unit})")
        axes.grid(axis="x", visible=False)
        return to_svg(figure)
