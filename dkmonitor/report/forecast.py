"""When will the disk be full? A straight line through the recent disk-use readings.

A plain least-squares fit of disk use (percent) against time over a stated
recent window (by default the last 30 days of history, counted back from the
newest reading), extended forward to the thresholds asked for. It is the
forecast an administrator would draw with a ruler, and the report says so:
the window, the number of readings and the growth per day are given with
every date. It answers honestly when it cannot: too few readings, or too
short a span, is "not enough history"; a flat or shrinking trend is "no
growth"; a reading already at or over a threshold is "already over".

No numpy: the sums are a handful of floats per reading, and this module is
imported by tests and by the report alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WINDOW = timedelta(days=30)
# Fewer readings, or a shorter span than this, is no basis for a date.
MIN_POINTS = 3
MIN_SPAN = timedelta(days=2)
# Growth slower than this (percent per day) is "no growth": at 0.001 %/day a
# disk takes 270 years to fill, and such a date would only be noise.
MIN_SLOPE = 0.001
# Dates further out than this are reported as "not within 10 years".
HORIZON = timedelta(days=3652)

NOT_ENOUGH = "not enough history"
NO_GROWTH = "no growth"
ALREADY = "already over"
BEYOND = "not within 10 years"
FORECAST = "forecast"


@dataclass(frozen=True)
class Crossing:
    """When the fitted line reaches ``threshold``: a date, or why there is none."""

    threshold: float
    status: str  # FORECAST, ALREADY, NO_GROWTH, NOT_ENOUGH or BEYOND
    when: datetime | None = None

    def describe(self) -> str:
        if self.status == FORECAST and self.when is not None:
            return self.when.strftime("%Y-%m-%d")
        return self.status


@dataclass(frozen=True)
class Forecast:
    """The fit and its crossings; ``slope`` in percent per day, None without a fit."""

    window: timedelta
    points: int  # readings inside the window
    start: datetime | None  # first and last reading inside the window
    end: datetime | None
    slope: float | None = None
    intercept: float | None = None  # percent at ``end``
    crossings: tuple[Crossing, ...] = field(default_factory=tuple)

    def at(self, when: datetime) -> float | None:
        """The fitted percent at ``when`` (for drawing the line)."""
        if self.slope is None or self.intercept is None or self.end is None:
            return None
        return self.intercept + self.slope * _days(when - self.end)


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400.0


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """(slope, intercept) of the least-squares line y = slope * x + intercept.

    None when every x is the same (no line through a single instant).
    """
    n = len(xs)
    if n < 2:
        return None
    mean_x = math.fsum(xs) / n
    mean_y = math.fsum(ys) / n
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def forecast(
    times: Sequence[datetime],
    percents: Sequence[float],
    thresholds: Sequence[float] = (100.0,),
    window: timedelta = WINDOW,
) -> Forecast:
    """Fit the readings of the last ``window`` and say when each threshold is crossed.

    ``times`` need not be sorted; the window ends at the newest reading, not
    at "now", so an old database forecasts from its own last reading (the
    report shows that date). A threshold the newest reading already reaches
    is ALREADY, whatever the line says.
    """
    if len(times) != len(percents):
        raise ValueError("times and percents differ in length")
    if not times:
        return Forecast(window, 0, None, None, crossings=_all(thresholds, NOT_ENOUGH))
    end = max(times)
    begin = end - window
    inside = sorted((t, p) for t, p in zip(times, percents, strict=True) if t >= begin)
    start = inside[0][0]
    last = inside[-1][1]
    base = Forecast(window, len(inside), start, end)
    line = fit_line([_days(t - end) for t, _ in inside], [p for _, p in inside])
    if len(inside) < MIN_POINTS or end - start < MIN_SPAN or line is None:
        return _with(base, None, thresholds, last, NOT_ENOUGH)
    slope, intercept = line
    fitted = Forecast(window, len(inside), start, end, slope, intercept)
    if slope < MIN_SLOPE:
        return _with(fitted, None, thresholds, last, NO_GROWTH)
    return _with(fitted, (slope, intercept), thresholds, last, FORECAST)


def _all(thresholds: Sequence[float], status: str) -> tuple[Crossing, ...]:
    return tuple(Crossing(float(t), status) for t in thresholds)


def _with(
    base: Forecast,
    line: tuple[float, float] | None,
    thresholds: Sequence[float],
    last: float,
    status: str,
) -> Forecast:
    """``base`` with a Crossing per threshold: ALREADY where the last reading is there."""
    crossings = []
    for threshold in thresholds:
        if last >= threshold:
            crossings.append(Crossing(float(threshold), ALREADY))
        elif line is None or base.end is None:
            crossings.append(Crossing(float(threshold), status))
        else:
            slope, intercept = line
            # Days after the newest reading; a line already past the threshold
            # while the reading is not (noise) means "now", not a date in the past.
            ahead = max(0.0, (threshold - intercept) / slope)
            if ahead > _days(HORIZON):
                crossings.append(Crossing(float(threshold), BEYOND))
            else:
                when = base.end + timedelta(days=ahead)
                crossings.append(Crossing(float(threshold), FORECAST, when))
    return Forecast(
        base.window,
        base.points,
        base.start,
        base.end,
        base.slope,
        base.intercept,
        tuple(crossings),
    )
