"""The disk-full forecast on synthetic history whose answer is known in advance."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from dkmonitor.report.forecast import (
    ALREADY,
    BEYOND,
    FORECAST,
    NO_GROWTH,
    NOT_ENOUGH,
    fit_line,
    forecast,
)

END = datetime(2025, 6, 30, 12, 0)


def hourly(days: int, start_percent: float, per_day: float) -> tuple[list[datetime], list[float]]:
    """Readings every hour for ``days`` days, ending at END, growing ``per_day`` points a day."""
    times = [END - timedelta(hours=h) for h in range(days * 24)]
    return times, [start_percent + per_day * (t - times[-1]).total_seconds() / 86400 for t in times]


def test_fit_line_recovers_an_exact_line():
    assert fit_line([0.0, 1.0, 2.0, 3.0], [5.0, 7.0, 9.0, 11.0]) == pytest.approx((2.0, 5.0))
    assert fit_line([1.0, 1.0], [1.0, 2.0]) is None
    assert fit_line([1.0], [1.0]) is None


def test_linear_growth_crosses_critical_and_full_on_the_known_days():
    # 60 days at 0.5 points a day from 40 %: at END it reads 40 + 0.5 * (60 - 1/24).
    times, percents = hourly(60, 40.0, 0.5)
    now = percents[0]
    fit = forecast(times, percents, (90.0, 100.0))
    assert fit.slope == pytest.approx(0.5)
    assert fit.end == END
    assert fit.start == END - timedelta(days=30)  # the window, not the whole history
    assert fit.points == 30 * 24 + 1
    critical, full = fit.crossings
    assert critical.status == full.status == FORECAST
    assert critical.when == pytest.approx(
        END + timedelta(days=(90 - now) / 0.5), abs=timedelta(seconds=1)
    )
    assert full.when == pytest.approx(
        END + timedelta(days=(100 - now) / 0.5), abs=timedelta(seconds=1)
    )
    assert critical.describe() == critical.when.strftime("%Y-%m-%d")


def test_only_the_recent_window_counts():
    # Flat for a year, then 1 point a day for the last 20 days: the 30-day fit sees growth.
    old_times = [END - timedelta(days=d) for d in range(20, 365)]
    new_times = [END - timedelta(days=d) for d in range(20)]
    times = old_times + new_times
    percents = [50.0] * len(old_times) + [50.0 + (20 - d) for d in range(20)]
    fit = forecast(times, percents, (100.0,), window=timedelta(days=10))
    assert fit.slope == pytest.approx(1.0)
    (full,) = fit.crossings
    assert full.status == FORECAST
    assert full.when == END + timedelta(days=30)  # 70 % at END, 1 point a day
    whole = forecast(times, percents, (100.0,), window=timedelta(days=400))
    assert whole.slope is not None and whole.slope < 0.2  # the year dilutes it


def test_noise_around_a_known_trend():
    rng = random.Random(7)
    times, percents = hourly(30, 20.0, 2.0)
    noisy = [p + rng.uniform(-1.0, 1.0) for p in percents]
    fit = forecast(times, noisy, (100.0,))
    assert fit.slope == pytest.approx(2.0, rel=0.02)
    expected = END + timedelta(days=(100 - percents[0]) / 2.0)
    assert abs(fit.crossings[0].when - expected) < timedelta(hours=12)


@pytest.mark.parametrize("per_day", [0.0, -0.3, 0.0005])
def test_flat_or_shrinking_use_is_no_growth(per_day):
    times, percents = hourly(40, 60.0, per_day)
    fit = forecast(times, percents, (90.0, 100.0))
    assert [c.status for c in fit.crossings] == [NO_GROWTH, NO_GROWTH]
    assert all(c.when is None for c in fit.crossings)
    assert fit.crossings[0].describe() == "no growth"


def test_too_little_history_says_so():
    assert forecast([], [], (100.0,)).crossings[0].status == NOT_ENOUGH
    one_day, percents = hourly(1, 10.0, 5.0)  # 24 readings, but one day is no trend
    assert forecast(one_day, percents, (100.0,)).crossings[0].status == NOT_ENOUGH
    two = [END - timedelta(days=5), END]
    assert forecast(two, [10.0, 20.0], (100.0,)).crossings[0].status == NOT_ENOUGH


def test_already_over_a_threshold():
    times, percents = hourly(30, 80.0, 0.5)  # ends near 94.5 %
    critical, full = forecast(times, percents, (90.0, 100.0)).crossings
    assert critical.status == ALREADY and critical.when is None
    assert full.status == FORECAST and full.when is not None


def test_a_date_centuries_away_is_not_given():
    times, percents = hourly(30, 1.0, 0.002)
    (full,) = forecast(times, percents, (100.0,)).crossings
    assert full.status == BEYOND and full.when is None


def test_unsorted_input_gives_the_same_answer():
    times, percents = hourly(30, 30.0, 1.0)
    pairs = list(zip(times, percents, strict=True))
    random.Random(3).shuffle(pairs)
    shuffled = forecast([t for t, _ in pairs], [p for _, p in pairs], (100.0,))
    assert shuffled.crossings == forecast(times, percents, (100.0,)).crossings


def test_mismatched_lengths_are_a_bug():
    with pytest.raises(ValueError):
        forecast([END], [], (100.0,))
